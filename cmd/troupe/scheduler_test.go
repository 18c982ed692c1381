package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/report"
)

const fourSimLab = `
[[board]]
name = "sim-a"
device_type = "sim"
[[board]]
name = "sim-b"
device_type = "sim"
[[board]]
name = "sim-c"
device_type = "sim"
[[board]]
name = "sim-d"
device_type = "sim"
`

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

func sizedJob(name string, n int, run string) string {
	return fmt.Sprintf(`name = %q
timeout = "1m"
[roles.node]
device_type = "sim"
count = %d
[[action]]
type = "boot"
[[action]]
type = "test"
name = "work"
run = %q
`, name, n, run)
}

// busyWindows reads, per board, the time windows in which each job used it
// (first to last line of that board's node in the job's group.log).
func busyWindows(t *testing.T, out string, r *report.Results) map[string][2]time.Time {
	t.Helper()
	w := map[string][2]time.Time{}
	for _, n := range r.Nodes {
		first := groupLogTime(t, out, n.Name, "")
		b, err := os.ReadFile(filepath.Join(out, "logs", "group.log"))
		require.NoError(t, err)
		var last time.Time
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.SplitN(line, " ", 3)
			if len(f) >= 2 && f[1] == n.Name {
				ts, err := time.Parse(time.RFC3339Nano, f[0])
				require.NoError(t, err)
				last = ts
			}
		}
		w[n.Board] = [2]time.Time{first, last}
	}
	return w
}

// TestSchedulerSharesSmallLab: five jobs needing 3, 3, 2, 4 and 1 boards
// on a 4-board lab all complete; a board is never used by two jobs at once.
func TestSchedulerSharesSmallLab(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	labFile := writeFile(t, dir, "lab.toml", fourSimLab)
	var files []string
	for i, n := range []int{3, 3, 2, 4, 1} {
		files = append(files, writeFile(t, dir, fmt.Sprintf("j%d.toml", i), sizedJob(fmt.Sprintf("j%d", i), n, "sleep 0.3; troupe-test-case ok --result pass")))
	}
	res := troupe(t, append([]string{"run", "--lab", labFile, "--out", "OUT"}, files...)...)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)

	type use struct {
		job      string
		from, to time.Time
	}
	uses := map[string][]use{}
	for i := range 5 {
		name := fmt.Sprintf("j%d", i)
		out := filepath.Join(res.out, name)
		r := readResults(t, out)
		assert.Equal(t, report.StatusComplete, r.Job.Status, name)
		for b, w := range busyWindows(t, out, r) {
			uses[b] = append(uses[b], use{name, w[0], w[1]})
		}
	}
	assert.LessOrEqual(t, len(uses), 4)
	for b, us := range uses {
		for i := range us {
			for j := i + 1; j < len(us); j++ {
				overlap := us[i].from.Before(us[j].to) && us[j].from.Before(us[i].to)
				assert.False(t, overlap, "board %s used by %s and %s at once", b, us[i].job, us[j].job)
			}
		}
	}
}

// TestSchedulerExplainsWaiting: a job that waits for boards held by another
// is told why after a few seconds.
func TestSchedulerExplainsWaiting(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	labFile := writeFile(t, dir, "lab.toml", fourSimLab)
	long := writeFile(t, dir, "long.toml", sizedJob("long", 4, "sleep 5"))
	small := writeFile(t, dir, "small.toml", sizedJob("small", 1, "true"))
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT", long, small)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	assert.Regexp(t, `small waits: .*long`, res.stdout)
}

// TestSchedulerRejectsJobTooBig: a job needing more boards than the lab has
// is rejected at once, naming the role; nothing runs.
func TestSchedulerRejectsJobTooBig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	labFile := writeFile(t, dir, "lab.toml", fourSimLab)
	ok := writeFile(t, dir, "ok.toml", sizedJob("ok", 1, "true"))
	big := writeFile(t, dir, "big.toml", sizedJob("big", 5, "true"))
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT", ok, big)
	assert.Equal(t, 3, res.code)
	assert.Contains(t, res.stderr, "role node needs 5 boards of type sim; the lab has 4")
	assert.NoDirExists(t, res.out)
}

func brokenJob(t *testing.T, dir, name string, priority int) string {
	return writeFile(t, dir, name+".toml", fmt.Sprintf(`name = %q
priority = %d
[roles.node]
device_type = "sim"
[[action]]
type = "boot"
`, name, priority))
}

// brokenBoard is a lab entry for a board of type sim whose console is
// gone (its serial device does not exist): a board-side failure, an
// infrastructure error of every job that gets it.
func brokenBoard(name string) string {
	return fmt.Sprintf(`[[board]]
name = %q
device_type = "sim"
backend = "hardware"
[board.console]
kind = "serial"
device = "/dev/does-not-exist"
[board.power]
kind = "command"
on = ["true"]
off = ["true"]
state = ["echo", "off"]
`, name)
}

// TestInfrastructureRetries: a job ended by an infrastructure error is
// retried once on another board (results record the attempt); boards that
// fail three times in a row are taken out of service.
func TestInfrastructureRetries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	labFile := writeFile(t, dir, "lab.toml", brokenBoard("sim-a")+brokenBoard("sim-b"))
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT",
		brokenJob(t, dir, "b1", 50), brokenJob(t, dir, "b2", 50), brokenJob(t, dir, "b3", 50))
	require.Equal(t, 2, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	for _, name := range []string{"b1", "b2", "b3"} {
		r := readResults(t, filepath.Join(res.out, name))
		assert.Equal(t, report.StatusIncomplete, r.Job.Status, name)
		assert.Equal(t, report.Infrastructure, r.Job.Class, name)
		if len(r.Nodes) == 0 {
			// Both boards went out of service before its retry.
			assert.Regexp(t, "no boards (left )?in service", r.Job.Error, name)
			continue
		}
		if assert.Len(t, r.Job.Attempts, 1, name) {
			assert.NotEqual(t, r.Job.Attempts[0].Boards[0], r.Nodes[0].Board, "%s retried on another board", name)
			assert.Contains(t, r.Job.Attempts[0].Error, "console of")
		}
	}
	// Six infrastructure errors on two boards, no success between: at
	// least one board failed three times in a row.
	assert.Contains(t, res.stderr, "board taken out of service")
}

// TestJobLeftWithoutBoards: a queued job whose boards have all gone out of
// service ends at once instead of waiting forever.
func TestJobLeftWithoutBoards(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	labFile := writeFile(t, dir, "lab.toml", "retries = 0\nbad_after = 1\n"+brokenBoard("sim-a"))
	late := writeFile(t, dir, "late.toml", sizedJob("late", 1, "true"))
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT", brokenJob(t, dir, "broken", 100), late)
	require.Equal(t, 2, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	r := readResults(t, filepath.Join(res.out, "broken"))
	assert.Empty(t, r.Job.Attempts, "retries = 0")
	l := readResults(t, filepath.Join(res.out, "late"))
	assert.Equal(t, report.StatusIncomplete, l.Job.Status)
	assert.Regexp(t, "no boards (left )?in service", l.Job.Error)
	assert.Contains(t, res.stderr, "board taken out of service")
}

// TestHealthChecks: boards of a device type with a health-check job are
// checked before their first job; a board that fails its check is never
// given a job.
func TestHealthChecks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "health.toml", `name = "sim-health"
timeout = "30s"
[roles.dut]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "check"
run = '''
echo "checking $TROUPE_BOARD"
troupe-test-case board-ok --shell test "$TROUPE_BOARD" != sim-b
'''`)
	labFile := writeFile(t, dir, "lab.toml", fourSimLab+`
[[health_check]]
device_type = "sim"
job = "health.toml"
`)
	var files []string
	for i := range 3 {
		files = append(files, writeFile(t, dir, fmt.Sprintf("j%d.toml", i), sizedJob(fmt.Sprintf("j%d", i), 2, "troupe-test-case ok --result pass")))
	}
	res := troupe(t, append([]string{"run", "--lab", labFile, "--out", "OUT"}, files...)...)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	for i := range 3 {
		r := readResults(t, filepath.Join(res.out, fmt.Sprintf("j%d", i)))
		for _, n := range r.Nodes {
			assert.NotEqual(t, "sim-b", n.Board, "a board that failed its health check got a job")
		}
	}
	checks, err := filepath.Glob(filepath.Join(res.out, "health-checks", "sim-*"))
	require.NoError(t, err)
	assert.Len(t, checks, 4, "every board checked once")
	bad, err := filepath.Glob(filepath.Join(res.out, "health-checks", "sim-b-*"))
	require.NoError(t, err)
	require.Len(t, bad, 1)
	r := readResults(t, bad[0])
	assert.Equal(t, 1, r.ExitCode())
	assert.Contains(t, res.stderr, "failed its health check")
}

// TestCancelQueuedAndRunning: SIGINT cancels the running job (its boards
// are powered off) and the queued one, which never starts.
func TestCancelQueuedAndRunning(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	labFile := writeFile(t, dir, "lab.toml", fourSimLab)
	long := writeFile(t, dir, "long.toml", sizedJob("long", 4, "echo running; sleep 1000"))
	queued := writeFile(t, dir, "queued.toml", sizedJob("queued", 1, "true"))
	out := filepath.Join(dir, "out")
	cmd := exec.Command(troupeBin, "run", "--lab", labFile, "--out", out, long, queued)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var se bytes.Buffer
	cmd.Stderr = &se
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	sc := bufio.NewScanner(stdout)
	running := 0
	for running < 4 && sc.Scan() {
		if strings.Contains(sc.Text(), "test 'work'") {
			running++
		}
	}
	require.Equal(t, 4, running, "all four nodes of the long job run their test")
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	for sc.Scan() {
	}
	_ = cmd.Wait()
	assert.Equal(t, 2, cmd.ProcessState.ExitCode(), se.String())
	r := readResults(t, filepath.Join(out, "long"))
	assert.Equal(t, report.StatusCanceled, r.Job.Status)
	q := readResults(t, filepath.Join(out, "queued"))
	assert.Equal(t, report.StatusCanceled, q.Job.Status)
	assert.Contains(t, q.Job.Error, "while queued")
	assert.Empty(t, q.Nodes)
}

// TestHealthRecheckAndMaintenance: with every = 1 a board is checked again
// after each job; a board in maintenance is never given a job.
func TestHealthRecheckAndMaintenance(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "health.toml", `name = "sim-health"
timeout = "30s"
[roles.dut]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "check"
run = "troupe-test-case alive --result pass"`)
	labFile := writeFile(t, dir, "lab.toml", `
[[board]]
name = "sim-a"
device_type = "sim"
[[board]]
name = "sim-m"
device_type = "sim"
health = "maintenance"
[[health_check]]
device_type = "sim"
job = "health.toml"
every = 1
`)
	j1 := writeFile(t, dir, "j1.toml", strings.Replace(sizedJob("j1", 1, "true"), `timeout = "1m"`, "timeout = \"1m\"\npriority = 60", 1))
	j2 := writeFile(t, dir, "j2.toml", sizedJob("j2", 1, "true"))
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT", j1, j2)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	for _, name := range []string{"j1", "j2"} {
		r := readResults(t, filepath.Join(res.out, name))
		require.Len(t, r.Nodes, 1)
		assert.Equal(t, "sim-a", r.Nodes[0].Board, "never the board in maintenance")
	}
	done, err := filepath.Glob(filepath.Join(res.out, "health-checks", "sim-a-*", "results.json"))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, len(done), 2, "checked before j1 and again before j2")
	m, err := filepath.Glob(filepath.Join(res.out, "health-checks", "sim-m-*"))
	require.NoError(t, err)
	assert.Empty(t, m, "a board in maintenance is not checked either")
}
