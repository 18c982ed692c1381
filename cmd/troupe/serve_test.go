package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/internal/lockedbuf"
	"github.com/troupe-lab/troupe/server"
)

// The end-to-end tests of `troupe serve`: the real binary (built with
// -race by TestMain), killed with SIGKILL and SIGTERM, restarted on the
// same data directory, driven through its HTTP API and the client
// commands.

// serveLab is two sim boards; one infrastructure retry per job.
// serveLab's sim boards are not sandboxed: the tests find the boards'
// processes on the host by the pids the boards print (the sandbox is
// tested by TestSandboxProbeJob).
const serveLab = `retries = 1
sandbox = "none"

[[board]]
name = "sim-a"
device_type = "sim"

[[board]]
name = "sim-b"
device_type = "sim"
`

// serveProc is a running `troupe serve`.
type serveProc struct {
	*troupeProc
	url string // http://127.0.0.1:port
}

// troupeProc is a troupe process a test started (startProc).
type troupeProc struct {
	cmd    *exec.Cmd
	out    *lockedbuf.Buffer
	exited chan struct{}
}

// startProc starts troupe with args, its output in out; the process is
// killed at the end of the test if it still runs, and its output logged
// if the test failed.
func startProc(t *testing.T, args ...string) *troupeProc {
	t.Helper()
	p := &troupeProc{out: &lockedbuf.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(troupeBin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	require.NoError(t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("troupe %v output:\n%s", args, p.out.String())
		}
	})
	return p
}

var servingRE = regexp.MustCompile(`troupe serving on (http://\S+)`)

// startServe starts `troupe serve` with args (an --addr of 127.0.0.1:0
// unless args has one) and waits until it serves. The process is killed
// at the end of the test if it still runs.
func startServe(t *testing.T, args ...string) *serveProc {
	t.Helper()
	if !strings.Contains(strings.Join(args, " "), "--addr") {
		args = append(args, "--addr", "127.0.0.1:0")
	}
	p := &serveProc{troupeProc: startProc(t, append([]string{"serve"}, args...)...)}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if m := servingRE.FindStringSubmatch(p.out.String()); m != nil {
			p.url = m[1]
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("troupe serve %v exited with %d before serving:\n%s", args, p.cmd.ProcessState.ExitCode(), p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("troupe serve %v did not serve within a minute:\n%s", args, p.out.String())
	return nil
}

// wait waits up to d for the server to exit and returns its exit code.
func (p *serveProc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("troupe serve did not exit within %s:\n%s", d, p.out.String())
		return -1
	}
}

// kill9 kills the server with SIGKILL and waits until it is gone.
func (p *serveProc) kill9(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	p.wait(t, 10*time.Second)
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "killed by SIGKILL: %v", p.cmd.ProcessState)
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// api sends a request to the server and returns the status and body.
func api(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set(server.ClientHeader, "test")
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, data
}

// submitJob posts a job file and returns its ID.
func submitJob(t *testing.T, base, body string) string {
	t.Helper()
	code, data := api(t, "POST", base+"/api/v1/jobs", "", body)
	require.Equal(t, http.StatusCreated, code, string(data))
	var created struct{ ID string }
	require.NoError(t, json.Unmarshal(data, &created))
	require.NotEmpty(t, created.ID)
	return created.ID
}

func getJob(t *testing.T, base, id string) server.Job {
	t.Helper()
	code, data := api(t, "GET", base+"/api/v1/jobs/"+id, "", "")
	require.Equal(t, http.StatusOK, code, string(data))
	var j server.Job
	require.NoError(t, json.Unmarshal(data, &j))
	return j
}

// waitJob polls job id until ok holds, for at most d.
func waitJob(t *testing.T, base, id string, d time.Duration, what string, ok func(server.Job) bool) server.Job {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		j := getJob(t, base, id)
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s (%s) not %s within %s: %+v", id, j.Name, what, d, j)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitEnded(t *testing.T, base, id string, d time.Duration) server.Job {
	t.Helper()
	return waitJob(t, base, id, d, "ended", func(j server.Job) bool {
		return j.Status != "queued" && j.Status != "running"
	})
}

// leftoverCmd starts a process in a session of its own (it survives the
// console's hangup) and prints its pid once it is there: printed before its
// setsid, a kill of the server at once could still hang it up.
const leftoverCmd = `setsid sleep 31337 &
p=$!
i=0
while [ "$(cut -d' ' -f6 /proc/$p/stat)" != "$p" ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done
echo "leftover pid: $p"`

var leftoverRE = regexp.MustCompile(`(?m) leftover pid: (\d+)$`)

// waitLeftovers polls job id's merged log until it shows n leftover pids.
func waitLeftovers(t *testing.T, base, id string, n int) []int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		code, data := api(t, "GET", base+"/api/v1/jobs/"+id+"/logs", "", "")
		require.Equal(t, http.StatusOK, code, string(data))
		var pids []int
		for _, m := range leftoverRE.FindAllStringSubmatch(string(data), -1) {
			p, err := strconv.Atoi(m[1])
			require.NoError(t, err)
			pids = append(pids, p)
		}
		if len(pids) >= n {
			require.Len(t, pids, n, "leftover pids in the log of job %s:\n%s", id, data)
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: %d leftover pids after a minute; log:\n%s", id, len(pids), data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// alive tells whether pid is a live process (a zombie is not: it was
// killed and waits only to be reaped, maybe by an init that never does).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may hold spaces and parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// waitGone waits up to d until none of pids is alive.
func waitGone(t *testing.T, pids []int, d time.Duration, msg string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var left []int
		for _, p := range pids {
			if alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: processes %v still alive after %s", msg, left, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killPids kills leftover test processes, whatever happens to the test.
func killPids(t *testing.T, pids []int) {
	t.Cleanup(func() {
		for _, p := range pids {
			if alive(p) {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
	})
}

func writeTemp(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

// mark is a line the jobs of TestServeKill9 append to the shared marks
// file: "start|end JOB NODE UNIXNANO".
type mark struct {
	what, job, node string
	at              time.Time
}

func readMarks(t *testing.T, path string) []mark {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var ms []mark
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		require.Len(t, f, 4, "mark %q", line)
		ns, err := strconv.ParseInt(f[3], 10, 64)
		require.NoError(t, err, "mark %q", line)
		ms = append(ms, mark{what: f[0], job: f[1], node: f[2], at: time.Unix(0, ns)})
	}
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].at.Before(ms[j].at) })
	return ms
}

// TestServeKill9 kills the server with SIGKILL while job A runs on both
// boards with B and C queued behind it, and a job D done before: the
// processes A's tests left survive the kill (it was a hard kill); the
// next server on the same data directory powers the boards off (they are
// gone), re-queues A with an attempt "server stopped during the run" and
// runs A, B and C to completion, never two runs of a job or two runs on a
// board at once; D's logs and results are still served.
func TestServeKill9(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	shared := t.TempDir()
	marks := filepath.Join(shared, "marks")
	lab := writeTemp(t, "lab.toml", serveLab)
	markCmd := func(what, job string) string {
		return fmt.Sprintf(`echo "%s %s $TROUPE_NODE $(date +%%s%%N)" >> %s`, what, job, marks)
	}

	srv := startServe(t, "--lab", lab, "--data", data)

	// D ends before the kill.
	d := submitJob(t, srv.url, `name = "done-before"
[roles.d]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "d"
run = '''
echo "output of job D"
troupe-test-case d-case --result pass
'''`)
	require.Equal(t, "complete", waitEnded(t, srv.url, d, 2*time.Minute).Status)

	// A holds both boards. Its first run leaves a process in a session of
	// its own (it survives the console's hangup) and hangs; its second
	// run (the flag directories exist) ends at once.
	a := submitJob(t, srv.url, fmt.Sprintf(`name = "a"
timeout = "5m"
[roles.a]
device_type = "sim"
count = 2
[[action]]
type = "boot"
[[action]]
type = "test"
name = "a"
timeout = "3m"
run = '''
%s
if mkdir %s/first-$TROUPE_NODE 2>/dev/null; then
%s
  sleep 150
fi
%s
troupe-test-case a-case --result pass
'''`, markCmd("start", "A"), shared, leftoverCmd, markCmd("end", "A")))
	queued := func(name string) string {
		return submitJob(t, srv.url, fmt.Sprintf(`name = %q
[roles.q]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "q"
run = '''
%s
sleep 0.2
%s
troupe-test-case q-case --result pass
'''`, name, markCmd("start", name), markCmd("end", name)))
	}
	b, c := queued("B"), queued("C")

	waitJob(t, srv.url, a, time.Minute, "running", func(j server.Job) bool { return j.Status == "running" })
	pids := waitLeftovers(t, srv.url, a, 2)
	killPids(t, pids)
	for _, id := range []string{b, c} {
		assert.Equal(t, "queued", getJob(t, srv.url, id).Status, "job %s waits for A's boards", id)
	}

	srv.kill9(t)
	for _, p := range pids {
		require.True(t, alive(p), "pid %d of job A should survive a kill -9 of the server", p)
	}

	restart := time.Now()
	srv = startServe(t, "--lab", lab, "--data", data)
	waitGone(t, pids, 10*time.Second, "boards powered off at start")
	assert.Contains(t, srv.out.String(), "queued again")

	for _, id := range []string{b, c} {
		st := getJob(t, srv.url, id).Status
		assert.Contains(t, []string{"queued", "running", "complete"}, st, "job %s after the restart", id)
	}
	ja := waitEnded(t, srv.url, a, 2*time.Minute)
	assert.Equal(t, "complete", ja.Status, "%+v", ja)
	require.NotEmpty(t, ja.Attempts)
	assert.Equal(t, "server stopped during the run", ja.Attempts[0].Error)
	assert.ElementsMatch(t, []string{"sim-a", "sim-b"}, ja.Attempts[0].Boards)
	require.NotNil(t, ja.Started)
	assert.True(t, ja.Started.After(restart), "A's second attempt started %s, before the restart %s", ja.Started, restart)
	for _, id := range []string{b, c} {
		j := waitEnded(t, srv.url, id, 2*time.Minute)
		assert.Equal(t, "complete", j.Status, "%+v", j)
		assert.Empty(t, j.Attempts, "job %s was never started before the kill", id)
	}

	// The marks: A ran twice (first run cut by the kill), B and C once,
	// never two runs of a job nor more nodes than boards at once. The
	// first run of A counts as running until the restart.
	ms := readMarks(t, marks)
	starts := map[string]int{}
	ends := map[string]int{}
	for _, m := range ms {
		if m.what == "start" {
			starts[m.job]++
		} else {
			ends[m.job]++
		}
	}
	assert.Equal(t, map[string]int{"A": 4, "B": 1, "C": 1}, starts, "%+v", ms)
	assert.Equal(t, map[string]int{"A": 2, "B": 1, "C": 1}, ends, "%+v", ms)
	for _, m := range ms[:2] {
		assert.True(t, m.what == "start" && m.job == "A" && m.at.Before(restart), "A's first run: %+v", m)
	}
	for _, m := range ms[2:] {
		assert.True(t, m.at.After(restart), "only A's first run started before the restart: %+v", m)
	}
	// A's first run had no end: it counts as running until the restart.
	ms = append(ms, mark{what: "end", job: "A", at: restart}, mark{what: "end", job: "A", at: restart})
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].at.Before(ms[j].at) })
	open := map[string]int{} // job → nodes running
	total := 0
	for _, m := range ms {
		if m.what == "end" {
			open[m.job]--
			total--
			continue
		}
		open[m.job]++
		total++
		assert.LessOrEqual(t, open[m.job], map[string]int{"A": 2, "B": 1, "C": 1}[m.job], "two runs of %s at once: %+v", m.job, ms)
		assert.LessOrEqual(t, total, 2, "more nodes running than boards at %s: %+v", m.at, ms)
	}

	// D, done before the kill, still has its logs and results.
	code, logs := api(t, "GET", srv.url+"/api/v1/jobs/"+d+"/logs", "", "")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(logs), "output of job D")
	code, logs = api(t, "GET", srv.url+"/api/v1/jobs/"+d+"/logs?node=d-0", "", "")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(logs), "output of job D")
	code, junit := api(t, "GET", srv.url+"/api/v1/jobs/"+d+"/junit.xml", "", "")
	assert.Equal(t, http.StatusOK, code, string(junit))
	assert.Contains(t, string(junit), "d-case")
	jd := getJob(t, srv.url, d)
	assert.Equal(t, "complete", jd.Status)
	assert.NotEmpty(t, jd.Tests)

	require.NoError(t, srv.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, srv.wait(t, time.Minute), srv.out.String())
}

// TestServeSIGTERM: SIGTERM while a job runs stops the server cleanly
// (exit 0) with its boards powered off; while it runs, a second server
// on the same data directory is refused and touches nothing; the next
// server re-queues the job.
func TestServeSIGTERM(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	lab := writeTemp(t, "lab.toml", serveLab)
	srv := startServe(t, "--lab", lab, "--data", data)
	id := submitJob(t, srv.url, `name = "long"
[roles.a]
device_type = "sim"
count = 2
[[action]]
type = "boot"
[[action]]
type = "test"
name = "hang"
run = '''
`+leftoverCmd+`
sleep 150
'''`)
	pids := waitLeftovers(t, srv.url, id, 2)
	killPids(t, pids)

	second := troupe(t, "serve", "--lab", lab, "--data", data, "--addr", "127.0.0.1:0")
	assert.Equal(t, 2, second.code, second.stdout+second.stderr)
	assert.Contains(t, second.stderr, "in use by another troupe server")
	assert.NotContains(t, second.stdout, "troupe serving")
	for _, p := range pids {
		assert.True(t, alive(p), "the refused server powered off a board of the first (pid %d gone)", p)
	}
	assert.Equal(t, "running", getJob(t, srv.url, id).Status)

	require.NoError(t, srv.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, srv.wait(t, time.Minute), srv.out.String())
	waitGone(t, pids, 5*time.Second, "boards powered off at SIGTERM")
	assert.Contains(t, srv.out.String(), "stopped")
	assert.NotContains(t, srv.out.String(), "level=ERROR")

	srv = startServe(t, "--lab", lab, "--data", data)
	j := waitJob(t, srv.url, id, time.Minute, "re-queued and running", func(j server.Job) bool {
		return j.Status == "running" && len(j.Attempts) == 1
	})
	assert.Equal(t, "server stopped during the run", j.Attempts[0].Error)
	code, body := api(t, "POST", srv.url+"/api/v1/jobs/"+id+"/cancel", "", "")
	assert.Equal(t, http.StatusAccepted, code, string(body))
	assert.Equal(t, "canceled", waitEnded(t, srv.url, id, time.Minute).Status)
	require.NoError(t, srv.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, srv.wait(t, time.Minute), srv.out.String())
}

// TestServeAuth: a non-loopback address without tokens is refused; with a
// tokens file, a missing or wrong token is 401 and a viewer submitting is
// 403, through the binary's HTTP server and the client commands.
func TestServeAuth(t *testing.T) {
	t.Parallel()
	res := troupe(t, "serve", "--data", t.TempDir(), "--addr", "0.0.0.0:0")
	assert.Equal(t, 3, res.code, res.stdout+res.stderr)
	assert.Contains(t, res.stderr, "refusing to listen on 0.0.0.0:0 without --token-file")

	short := writeTemp(t, "short.toml", "[[token]]\nname = \"x\"\nsecret = \"short\"\nrole = \"viewer\"\n")
	res = troupe(t, "serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--token-file", short)
	assert.Equal(t, 3, res.code, res.stdout+res.stderr)
	assert.Contains(t, res.stderr, "too short")

	const viewer, submitter = "viewer-secret-0123456789", "submitter-secret-0123456789"
	tokens := writeTemp(t, "tokens.toml", fmt.Sprintf(`[[token]]
name = "watcher"
secret = %q
role = "viewer"

[[token]]
name = "ci"
secret = %q
role = "submitter"
`, viewer, submitter))
	srv := startServe(t, "--lab", writeTemp(t, "lab.toml", serveLab), "--data", t.TempDir(), "--token-file", tokens)
	assert.Contains(t, srv.out.String(), "tokens from "+tokens)
	job := `name = "authed"
[roles.a]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "t"
run = "troupe-test-case ok --result pass"
`
	jobs := srv.url + "/api/v1/jobs"
	code, body := api(t, "GET", jobs, "", "")
	assert.Equal(t, http.StatusUnauthorized, code, string(body))
	code, body = api(t, "GET", jobs, "not-a-token-of-this-server", "")
	assert.Equal(t, http.StatusUnauthorized, code, string(body))
	code, body = api(t, "POST", jobs, "not-a-token-of-this-server", job)
	assert.Equal(t, http.StatusUnauthorized, code, string(body))
	code, body = api(t, "GET", jobs, viewer, "")
	assert.Equal(t, http.StatusOK, code, string(body))
	assert.JSONEq(t, "[]", string(body))
	code, body = api(t, "POST", jobs, viewer, job)
	assert.Equal(t, http.StatusForbidden, code, string(body))
	assert.Contains(t, string(body), `token \"watcher\" is a viewer`)
	code, body = api(t, "PUT", srv.url+"/api/v1/devices/sim-a/health", submitter, `{"health": "maintenance"}`)
	assert.Equal(t, http.StatusForbidden, code, string(body))
	code, body = api(t, "GET", jobs, viewer, "")
	assert.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, "[]", string(body), "refused requests change nothing")
	code, body = api(t, "POST", jobs, submitter, job)
	assert.Equal(t, http.StatusCreated, code, string(body))

	// The client commands send the token (flag or env) and report refusals.
	file := writeTemp(t, "job.toml", job)
	r := cli(t, nil, "submit", "--server", srv.url, "--token", viewer, file)
	assert.Equal(t, 2, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stderr, "is a viewer; this needs a submitter")
	r = cli(t, []string{"TROUPE_SERVER=" + srv.url, "TROUPE_TOKEN=wrong-token"}, "jobs")
	assert.Equal(t, 2, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stderr, "missing or unknown token")
	r = cli(t, []string{"TROUPE_SERVER=" + srv.url, "TROUPE_TOKEN=" + submitter}, "submit", file, "--follow")
	assert.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "job authed: complete")
	assert.NotContains(t, srv.out.String(), viewer, "secrets are never logged")
	assert.NotContains(t, srv.out.String(), submitter, "secrets are never logged")

	require.NoError(t, srv.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, srv.wait(t, time.Minute))
}

// cli runs a client command with extra environment variables (TROUPE_SERVER
// and TROUPE_TOKEN are cleared unless env sets them).
func cli(t *testing.T, env []string, args ...string) runResult {
	t.Helper()
	return runTroupe(t, runLimit, "", env, args...)
}

// TestServeCLI drives a server with the client commands: submit (with
// --follow: the log lines, then the exit code of troupe run), jobs, jobs
// show, jobs cancel and devices.
func TestServeCLI(t *testing.T) {
	t.Parallel()
	srv := startServe(t, "--lab", writeTemp(t, "lab.toml", serveLab), "--data", t.TempDir())
	env := []string{"TROUPE_SERVER=" + srv.url}
	job := func(name, run string) string {
		return writeTemp(t, name+".toml", fmt.Sprintf(`name = %q
[roles.a]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "t"
run = '''
%s
'''
`, name, run))
	}

	r := cli(t, env, "submit", job("passing", `echo "hello from $TROUPE_NODE"
troupe-test-case works --result pass`), "--follow")
	assert.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Regexp(t, `(?m)^job \d+ submitted$`, r.stdout)
	assert.NotContains(t, r.stdout, "\x1b[", "piped: plain lines, no live table")
	assert.Regexp(t, `(?m)^\d\d:\d\d:\d\d\.\d{3} a-0 +\| hello from a-0$`, r.stdout)
	assert.Regexp(t, `(?m)^\d\d:\d\d:\d\d\.\d{3} a-0 +\| sim-[ab] login: `, r.stdout, "the boot is streamed too")
	assert.Contains(t, r.stdout, "job passing: complete")
	passing := regexp.MustCompile(`job (\d+) submitted`).FindStringSubmatch(r.stdout)[1]

	r = cli(t, env, "submit", "--follow", job("failing", `troupe-test-case broken --result fail`))
	assert.Equal(t, 1, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "job failing: complete")
	assert.Contains(t, r.stdout, "1 failed")

	r = cli(t, nil, "submit", "--server", srv.url, job("shell-false", `troupe-test-case nope --shell false`), "--follow")
	assert.Equal(t, 1, r.code, r.stdout+r.stderr)

	invalid := writeTemp(t, "invalid.toml", "name = \"bad\"\n[roles.a]\ndevice_type = \"sim\"\nbogus = 1\n")
	r = cli(t, env, "submit", invalid, "--follow")
	assert.Equal(t, 3, r.code, r.stdout+r.stderr)
	assert.Regexp(t, `invalid\.toml:4.*bogus`, r.stderr)
	assert.NotContains(t, r.stdout, "submitted")

	r = cli(t, env, "submit", job("hanging", `echo "hanging now"
sleep 150`))
	assert.Equal(t, 0, r.code, r.stdout+r.stderr)
	hanging := regexp.MustCompile(`job (\d+) submitted`).FindStringSubmatch(r.stdout)[1]
	waitJob(t, srv.url, hanging, time.Minute, "running", func(j server.Job) bool { return j.Status == "running" })

	r = cli(t, env, "jobs")
	assert.Equal(t, 0, r.code, r.stdout+r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 5, r.stdout)
	assert.Regexp(t, `^ID\s+NAME\s+STATUS\s+SUBMITTED\s+ERROR$`, lines[0])
	assert.Regexp(t, `^`+hanging+`\s+hanging\s+running\s`, lines[1], "newest first")
	assert.Regexp(t, `^`+passing+`\s+passing\s+complete\s`, lines[4])
	r = cli(t, env, "jobs", "--status", "running")
	assert.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Len(t, strings.Split(strings.TrimSpace(r.stdout), "\n"), 2, r.stdout)

	r = cli(t, env, "jobs", "show", passing)
	assert.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "job "+passing+": passing\nstatus: complete\n")
	assert.Regexp(t, `(?m)^a-0\s+a\s+sim-[ab]\s+complete\s+2\s+0`, r.stdout)
	r = cli(t, env, "jobs", "show", "999")
	assert.Equal(t, 2, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stderr, `no job "999"`)

	r = cli(t, env, "devices")
	assert.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Regexp(t, `(?m)^NAME\s+TYPE\s+BACKEND\s+HEALTH\s+JOB\s+TAGS$`, r.stdout)
	assert.Regexp(t, `(?m)^sim-a\s+sim\s+sim\s+good\b`, r.stdout)
	assert.Regexp(t, `(?m)^sim-b\s+sim\s+sim\s+good\b`, r.stdout)
	assert.Regexp(t, `(?m)^sim-[ab]\s+sim\s+sim\s+good\s+`+hanging+`\s*$`, r.stdout, "the board of the running job")

	r = cli(t, env, "jobs", "cancel", hanging)
	assert.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "job "+hanging+" (hanging) canceled")
	j := waitEnded(t, srv.url, hanging, time.Minute)
	assert.Equal(t, "canceled", j.Status)
	assert.Contains(t, j.Error, "canceled by local")
	r = cli(t, env, "jobs", "cancel", hanging)
	assert.Equal(t, 2, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stderr, "already ended")

	r = cli(t, []string{"TROUPE_SERVER=127.0.0.1:1"}, "jobs")
	assert.Equal(t, 2, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stderr, "127.0.0.1:1")

	require.NoError(t, srv.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, srv.wait(t, time.Minute))
}
