package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	dir := t.TempDir()
	labFile := writeFile(t, dir, "lab.toml", fourSimLab)
	ok := writeFile(t, dir, "ok.toml", sizedJob("ok", 1, "true"))
	big := writeFile(t, dir, "big.toml", sizedJob("big", 5, "true"))
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT", ok, big)
	assert.Equal(t, 3, res.code)
	assert.Contains(t, res.stderr, "role node needs 5 boards of type sim; the lab has 4")
	assert.NoDirExists(t, res.out)
}

// TestInfrastructureRetriesAndBadBoards: a job ended by an infrastructure
// error is retried once on another board (results record the attempt);
// boards that fail three times in a row are taken out of service, and a job
// left without boards ends instead of waiting forever.
func TestInfrastructureRetriesAndBadBoards(t *testing.T) {
	dir := t.TempDir()
	labFile := writeFile(t, dir, "lab.toml", "[[board]]\nname = \"sim-a\"\ndevice_type = \"sim\"\n[[board]]\nname = \"sim-b\"\ndevice_type = \"sim\"\n")
	broken := func(name string) string {
		return writeFile(t, dir, name+".toml", fmt.Sprintf(`name = %q
priority = 100
[roles.node]
device_type = "sim"
[[action]]
type = "deploy"
image = "missing.tar"
[[action]]
type = "boot"
`, name))
	}
	late := writeFile(t, dir, "late.toml", strings.Replace(sizedJob("late", 1, "true"), "timeout = \"1m\"", "timeout = \"1m\"\npriority = 0", 1))
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT", broken("b1"), broken("b2"), broken("b3"), late)
	require.Equal(t, 2, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)

	for _, name := range []string{"b1", "b2", "b3"} {
		r := readResults(t, filepath.Join(res.out, name))
		assert.Equal(t, report.StatusIncomplete, r.Job.Status, name)
		assert.Equal(t, report.Infrastructure, r.Job.Class, name)
		if assert.Len(t, r.Job.Attempts, 1, name) && assert.Len(t, r.Nodes, 1, name) {
			assert.NotEqual(t, r.Job.Attempts[0].Boards[0], r.Nodes[0].Board, "%s retried on another board", name)
			assert.Contains(t, r.Job.Attempts[0].Error, "deploy")
		}
	}
	r := readResults(t, filepath.Join(res.out, "late"))
	assert.Equal(t, report.StatusIncomplete, r.Job.Status)
	assert.Contains(t, r.Job.Error, "no boards left in service")
	assert.Contains(t, res.stderr, "board taken out of service")
}
