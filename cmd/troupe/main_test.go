package main

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/report"
)

// troupeBin is the real binary, built once for the end-to-end tests.
var troupeBin string

func TestMain(m *testing.M) {
	// Fuzzing (`make fuzz`: -run='^$' -fuzz=...) runs no end-to-end test,
	// in the coordinator and in each of its workers: no binary to build.
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "troupe-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	troupeBin = filepath.Join(dir, "troupe")
	build := exec.Command("go", "build", "-race", "-o", troupeBin, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build troupe:", err)
		os.Exit(1)
	}
	// A binary built with -race sleeps a second at exit (GORACE
	// atexit_sleep_ms, default 1000) so that racing goroutines can still
	// report; the tests run it hundreds of times. A race it reports
	// before it exits still fails them (exit code 66).
	if err := os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type runResult struct {
	code           int
	stdout, stderr string
	out            string // results dir
}

// runLimit is how long one run of the binary may take in a test.
const runLimit = 2 * time.Minute

// troupe runs the binary with args within runLimit; "OUT" in args is
// replaced by a fresh results directory.
func troupe(t *testing.T, args ...string) runResult {
	t.Helper()
	return troupeWithin(t, runLimit, args...)
}

// troupeWithin is troupe with another time limit.
func troupeWithin(t *testing.T, limit time.Duration, args ...string) runResult {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	for i, a := range args {
		if a == "OUT" {
			args[i] = out
		}
	}
	r := runTroupe(t, limit, "", nil, args...)
	r.out = out
	return r
}

// runTroupe runs the binary with args in dir ("": this one), with
// TROUPE_SERVER and TROUPE_TOKEN cleared unless env sets them, and fails
// the test if it has not ended within limit.
func runTroupe(t *testing.T, limit time.Duration, dir string, env []string, args ...string) runResult {
	t.Helper()
	cmd := exec.Command(troupeBin, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TROUPE_SERVER=") && !strings.HasPrefix(kv, "TROUPE_TOKEN=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	cmd.WaitDelay = time.Second
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("troupe %v did not end within %v; stdout:\n%s\nstderr:\n%s", args, limit, so.String(), se.String())
	}
	return runResult{code: cmd.ProcessState.ExitCode(), stdout: so.String(), stderr: se.String()}
}

func writeJob(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "job.toml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

func readResults(t *testing.T, dir string) *report.Results {
	t.Helper()
	r, err := report.Read(dir)
	require.NoError(t, err)
	return r
}

func nodeByName(t *testing.T, r *report.Results, name string) report.Node {
	t.Helper()
	for _, n := range r.Nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no node %s in %+v", name, r.Nodes)
	return report.Node{}
}

func TestRunHelloMultinode(t *testing.T) {
	t.Parallel()
	res := troupe(t, "run", "--out", "OUT", "../../examples/hello-multinode.toml")
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	assert.NotContains(t, res.stderr, "level=ERROR", "a clean run logs no errors")

	// A line per node phase change, then the summary table.
	for _, n := range []string{"server-0", "client-0", "client-1", "client-2"} {
		assert.Regexp(t, regexp.MustCompile(`(?m)`+n+`\s+sim-\d+\s+boot$`), res.stdout)
		assert.Regexp(t, regexp.MustCompile(`(?m)^`+n+`\s+\w+\s+sim-\d+\s+complete\s+\d+\s+0`), res.stdout)
	}
	assert.Contains(t, res.stdout, "job hello-multinode: complete")

	r := readResults(t, res.out)
	assert.Equal(t, report.StatusComplete, r.Job.Status)
	require.Len(t, r.Nodes, 4)
	boards := map[string]bool{}
	for _, n := range r.Nodes {
		assert.Equal(t, report.StatusComplete, n.Status, n.Name)
		boards[n.Board] = true
	}
	assert.Len(t, boards, 4, "every node has a board of its own")
	assert.Equal(t, "server", nodeByName(t, r, "server-0").Role)

	var serverCases []string
	for _, c := range r.Tests {
		assert.Equal(t, report.Pass, c.Result, "%+v", c)
		if c.Node == "server-0" {
			serverCases = append(serverCases, c.Suite+"/"+c.Name)
		}
		if c.Name == "disk-free" {
			require.NotNil(t, c.Measurement)
			assert.Equal(t, "KiB", c.Units)
		}
	}
	assert.ElementsMatch(t, []string{"serve/rootfs", "serve/uname", "serve/disk-free", "troupe/serve"}, serverCases)

	// Raw console per node, and the merged log in time order.
	raw, err := os.ReadFile(filepath.Join(res.out, "logs", "client-1.log"))
	require.NoError(t, err)
	assert.Contains(t, string(raw), "sim-1 login:")
	assert.Contains(t, string(raw), "I am client-1 (client) in job hello-multinode")
	f, err := os.Open(filepath.Join(res.out, "logs", "group.log"))
	require.NoError(t, err)
	defer f.Close()
	var last time.Time
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), " ", 3)
		require.GreaterOrEqual(t, len(fields), 2, sc.Text())
		ts, err := time.Parse(time.RFC3339Nano, fields[0])
		require.NoError(t, err)
		assert.False(t, ts.Before(last), "group.log out of order at %q", sc.Text())
		last = ts
		seen[fields[1]] = true
	}
	assert.Len(t, seen, 4)

	x, err := os.ReadFile(filepath.Join(res.out, "junit.xml"))
	require.NoError(t, err)
	var suites struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
	}
	require.NoError(t, xml.Unmarshal(x, &suites))
	assert.Equal(t, len(r.Tests), suites.Tests)
	assert.Zero(t, suites.Failures)
}

func TestRunOutcomes(t *testing.T) {
	tests := []struct {
		name     string
		job      string
		code     int
		status   string
		jobError string
		class    string            // of the job error
		nodes    map[string]string // node → status
		results  map[string]string // suite/name → result
	}{
		{
			name: "failing test case",
			job: `name = "failing"
[roles.solo]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "check"
run = '''
troupe-test-case good --result pass
troupe-test-case bad --shell false
lava-test-case lava-style --result fail --measurement 3 --units s
true
'''`,
			code: 1, status: report.StatusComplete,
			nodes:   map[string]string{"solo-0": report.StatusComplete},
			results: map[string]string{"check/good": "pass", "check/bad": "fail", "check/lava-style": "fail", "troupe/check": "pass"},
		},
		{
			name: "script exits non-zero",
			job: `name = "exits"
[roles.solo]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "check"
run = "exit 3"`,
			code: 1, status: report.StatusComplete,
			results: map[string]string{"troupe/check": "fail"},
		},
		{
			name: "action timeout",
			job: `name = "slow"
[roles.solo]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "hang"
timeout = "1s"
run = "sleep 60"`,
			code: 2, status: report.StatusIncomplete,
			jobError: `solo-0: test 'hang' timed out after 1s`,
			class:    report.TestFailure,
			nodes:    map[string]string{"solo-0": report.StatusIncomplete},
		},
		{
			name: "job timeout names node and action",
			job: `name = "late"
timeout = "8s"
[roles.a]
device_type = "sim"
[roles.b]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
roles = ["a"]
name = "hang"
run = "sleep 60"
[[action]]
type = "test"
roles = ["b"]
name = "quick"
run = "true"`,
			code: 2, status: report.StatusIncomplete,
			jobError: `job timed out after 8s: a-0 in test 'hang'`,
			class:    report.TestFailure,
			nodes:    map[string]string{"a-0": report.StatusIncomplete, "b-0": report.StatusComplete},
		},
		{
			name: "raise ends the node",
			job: `name = "raised"
[roles.solo]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "first"
run = '''
troupe-test-case before --result pass
lava-test-raise "disk <on> fire"
troupe-test-case after --result pass
'''
[[action]]
type = "test"
name = "second"
run = "true"`,
			code: 2, status: report.StatusIncomplete,
			jobError: `solo-0: test 'first' raised: disk [on] fire`,
			class:    report.TestFailure,
			nodes:    map[string]string{"solo-0": report.StatusIncomplete},
			results:  map[string]string{"first/before": "pass", "troupe/first": "fail"},
		},
		{
			name: "essential node failure ends the group",
			job: `name = "essential"
[roles.server]
device_type = "sim"
essential = true
[roles.client]
device_type = "sim"
count = 2
[[action]]
type = "boot"
[[action]]
type = "test"
roles = ["server"]
name = "serve"
run = "troupe-sync up; troupe-raise server broke"
[[action]]
type = "test"
roles = ["client"]
name = "wait"
run = "troupe-sync up; sleep 60"`,
			code: 2, status: report.StatusIncomplete,
			jobError: `essential node server-0 failed: test 'serve' raised: server broke: client-0 in test 'wait', client-1 in test 'wait'`,
			class:    report.TestFailure,
			nodes:    map[string]string{"server-0": report.StatusIncomplete, "client-0": report.StatusIncomplete, "client-1": report.StatusIncomplete},
		},
		{
			name: "non-essential failure does not stop others",
			job: `name = "nonessential"
[roles.server]
device_type = "sim"
[roles.client]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
roles = ["client"]
name = "break"
run = "troupe-raise client broke"
[[action]]
type = "test"
roles = ["server"]
name = "serve"
run = "sleep 1; troupe-test-case served --result pass"`,
			code: 2, status: report.StatusIncomplete,
			jobError: `client-0: test 'break' raised: client broke`,
			class:    report.TestFailure,
			nodes:    map[string]string{"server-0": report.StatusComplete, "client-0": report.StatusIncomplete},
			results:  map[string]string{"serve/served": "pass"},
		},
		// A missing image is invalid input (exit 3): TestImagesConfinedToJobDir.
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := troupe(t, "run", "--out", "OUT", writeJob(t, tc.job))
			require.Equal(t, tc.code, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
			r := readResults(t, res.out)
			assert.Equal(t, tc.status, r.Job.Status)
			assert.Equal(t, tc.class, r.Job.Class)
			if tc.jobError != "" {
				assert.Contains(t, r.Job.Error, tc.jobError)
				assert.Contains(t, res.stdout, "error: ")
			}
			for n, st := range tc.nodes {
				assert.Equal(t, st, nodeByName(t, r, n).Status, n)
			}
			got := map[string]string{}
			for _, c := range r.Tests {
				got[c.Suite+"/"+c.Name] = c.Result
			}
			for k, v := range tc.results {
				assert.Equal(t, v, got[k], "case %s in %v", k, got)
			}
			if tc.name == "raise ends the node" {
				assert.NotContains(t, got, "first/after")
				assert.NotContains(t, got, "troupe/second")
			}
		})
	}
}

func TestInvalidInput(t *testing.T) {
	tests := []struct {
		name string
		job  string
		want []string // each must appear in stderr
	}{
		{"unknown key", "name = \"x\"\ntimout = \"1m\"\n[roles.a]\ndevice_type = \"sim\"\n[[action]]\ntype = \"boot\"\n",
			[]string{`job.toml:2:`, `timout`}},
		{"bad duration", "name = \"x\"\ntimeout = \"soon\"\n[roles.a]\ndevice_type = \"sim\"\n[[action]]\ntype = \"boot\"\n",
			[]string{`job.toml:2: timeout:`, `"soon"`}},
		{"wrong type", "name = \"x\"\n[roles.a]\ndevice_type = \"sim\"\ncount = \"three\"\n[[action]]\ntype = \"boot\"\n",
			[]string{`job.toml:4: roles.a.count:`}},
		{"count < 1", "name = \"x\"\n[roles.a]\ndevice_type = \"sim\"\ncount = 0\n[[action]]\ntype = \"boot\"\n",
			[]string{`job.toml:4: roles.a.count:`}},
		{"undefined role", "name = \"x\"\n[roles.a]\ndevice_type = \"sim\"\n[[action]]\ntype = \"boot\"\nroles = [\"b\"]\n",
			[]string{`job.toml:6: action[0].roles`, `"b"`}},
		{"duplicate test names", "name = \"x\"\n[roles.a]\ndevice_type = \"sim\"\n[[action]]\ntype = \"test\"\nname = \"t\"\nrun = \"true\"\n[[action]]\ntype = \"test\"\nname = \"t\"\nrun = \"true\"\n",
			[]string{`job.toml:10: action[1].name`}},
		{"syntax error", "name = \"x\n", []string{`job.toml:1`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := writeJob(t, tc.job)
			for _, cmd := range [][]string{{"run", "--out", "OUT", p}, {"validate", p}} {
				res := troupe(t, cmd...)
				assert.Equal(t, 3, res.code, "%v: %s", cmd, res.stderr)
				for _, w := range tc.want {
					assert.Contains(t, res.stderr, w, "%v", cmd)
				}
				assert.NoDirExists(t, res.out, "nothing started")
			}
		})
	}
}

func TestValidateExamples(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../examples/*.toml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	res := troupe(t, append([]string{"validate"}, files...)...)
	assert.Equal(t, 0, res.code, res.stderr)
}

func TestLabCannotSatisfyJob(t *testing.T) {
	t.Parallel()
	lab := filepath.Join(t.TempDir(), "lab.toml")
	require.NoError(t, os.WriteFile(lab, []byte("[[board]]\nname = \"pi-0\"\ndevice_type = \"rpi4\"\ntags = [\"usb\"]\n"), 0o644))
	job := writeJob(t, "name = \"x\"\n[roles.client]\ndevice_type = \"rpi4\"\ncount = 3\ntags = [\"usb\"]\n[[action]]\ntype = \"boot\"\n")
	res := troupe(t, "run", "--lab", lab, "--out", "OUT", job)
	assert.Equal(t, 3, res.code)
	assert.Contains(t, res.stderr, "role client needs 3 boards of type rpi4 with tags [usb]; the lab has 1")
	assert.NoDirExists(t, res.out)
}

func TestRunOnLabFile(t *testing.T) {
	t.Parallel()
	lab := filepath.Join(t.TempDir(), "lab.toml")
	require.NoError(t, os.WriteFile(lab, []byte(`
[[board]]
name = "bench-a"
device_type = "sim"
[[board]]
name = "bench-b"
device_type = "sim"
tags = ["usb"]
`), 0o644))
	job := writeJob(t, `name = "onlab"
[roles.a]
device_type = "sim"
[roles.b]
device_type = "sim"
tags = ["usb"]
[[action]]
type = "boot"
[[action]]
type = "test"
name = "who"
run = "troupe-test-case who --result pass"`)
	res := troupe(t, "run", "--lab", lab, "--out", "OUT", job)
	require.Equal(t, 0, res.code, res.stdout+res.stderr)
	r := readResults(t, res.out)
	assert.Equal(t, "bench-a", nodeByName(t, r, "a-0").Board)
	assert.Equal(t, "bench-b", nodeByName(t, r, "b-0").Board)
}

// TestCancel sends SIGINT while tests run: the job ends canceled, results
// are written, and nothing the boards started is left running.
func TestCancel(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "out")
			// The pids the boards print are their sandboxes' own: the
			// sleeps are found on the host by a duration of their own.
			dur := strconv.Itoa(1000 + int(sig))
			job := writeJob(t, strings.ReplaceAll(`name = "cancel"
[roles.a]
device_type = "sim"
count = 2
[[action]]
type = "boot"
[[action]]
type = "test"
name = "hang"
run = '''
sleep 1000 &
a=$!
setsid sleep 1000 &
echo "bg pids: $a $!"
echo "ready to be canceled"
wait
'''`, "1000", dur))
			cmd := exec.Command(troupeBin, "run", "--out", out, job)
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			var se bytes.Buffer
			cmd.Stderr = &se
			require.NoError(t, cmd.Start())
			t.Cleanup(func() { _ = cmd.Process.Kill() })

			// Wait until both nodes run their test and printed their pids.
			logs := filepath.Join(out, "logs")
			sc := bufio.NewScanner(stdout)
			deadline := time.Now().Add(time.Minute)
			var pids []int
			for len(pids) < 2*2 && time.Now().Before(deadline) && sc.Scan() {
				if !strings.Contains(sc.Text(), "test 'hang'") {
					continue
				}
				pids = waitForPids(t, logs, deadline)
			}
			require.Len(t, pids, 4, "pids of background sleeps")
			require.Eventually(t, func() bool { return len(hostProcs("sleep", dur)) == 4 }, time.Minute, 20*time.Millisecond,
				"the background sleeps should run before cancel")
			require.NoError(t, cmd.Process.Signal(sig))
			var rest bytes.Buffer
			for sc.Scan() {
				rest.WriteString(sc.Text() + "\n")
			}
			err = cmd.Wait()
			require.Error(t, err)
			assert.Equal(t, 2, cmd.ProcessState.ExitCode(), rest.String()+se.String())

			r := readResults(t, out)
			assert.Equal(t, report.StatusCanceled, r.Job.Status)
			assert.Contains(t, r.Job.Error, "received")
			assert.Equal(t, report.JobError, r.Job.Class)
			for _, n := range r.Nodes {
				assert.Equal(t, report.StatusCanceled, n.Status)
			}
			assert.Empty(t, hostProcs("sleep", dur), "background sleeps left running")
		})
	}
}

// waitForPids reads the background pids both nodes printed.
func waitForPids(t *testing.T, logs string, deadline time.Time) []int {
	t.Helper()
	re := regexp.MustCompile(`bg pids: ([\d ]+)`)
	for time.Now().Before(deadline) {
		var pids []int
		for _, n := range []string{"a-0", "a-1"} {
			b, _ := os.ReadFile(filepath.Join(logs, n+".log"))
			if m := re.FindSubmatch(b); m != nil && bytes.Contains(b, []byte("ready to be canceled")) {
				for _, f := range strings.Fields(string(m[1])) {
					p, err := strconv.Atoi(f)
					require.NoError(t, err)
					pids = append(pids, p)
				}
			}
		}
		if len(pids) == 4 {
			return pids
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func TestUsage(t *testing.T) {
	t.Parallel()
	res := troupe(t)
	assert.Equal(t, 3, res.code)
	assert.Contains(t, res.stderr, "usage:")
	res = troupe(t, "frobnicate")
	assert.Equal(t, 3, res.code)
	assert.Contains(t, res.stderr, `unknown command "frobnicate"`)
}
