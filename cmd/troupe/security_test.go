package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/server"
)

// End-to-end tests of what a test script on a sim board can reach: the
// attacks of issue 12 tried from a job submitted with a submitter token,
// each asserted to fail with nothing else changed.

// secAPI sends an authenticated request with a job-file content type.
func secAPI(t *testing.T, method, u, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/toml")
	}
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, data
}

func secSubmit(t *testing.T, base, token, job string) string {
	t.Helper()
	code, data := secAPI(t, "POST", base+"/api/v1/jobs", token, job)
	require.Equal(t, http.StatusCreated, code, string(data))
	var created struct{ ID string }
	require.NoError(t, json.Unmarshal(data, &created))
	return created.ID
}

func secJob(t *testing.T, base, token, id string) server.Job {
	t.Helper()
	code, data := secAPI(t, "GET", base+"/api/v1/jobs/"+id, token, "")
	require.Equal(t, http.StatusOK, code, string(data))
	var j server.Job
	require.NoError(t, json.Unmarshal(data, &j))
	return j
}

// secWait polls job id until ok holds, for at most d; returns its merged log too.
func secWait(t *testing.T, base, token, id string, d time.Duration, what string, ok func(server.Job, string) bool) (server.Job, string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		j := secJob(t, base, token, id)
		_, logs := secAPI(t, "GET", base+"/api/v1/jobs/"+id+"/logs", token, "")
		if ok(j, string(logs)) {
			return j, string(logs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not %s within %s: %+v\n%s", id, what, d, j, logs)
		}
		time.Sleep(100 * time.Millisecond) // deadline poll of the API
	}
}

func ended(j server.Job) bool { return j.Status != "queued" && j.Status != "running" }

// hostProcs lists the host's processes whose command line is argv.
func hostProcs(argv ...string) []int {
	want := strings.Join(argv, "\x00") + "\x00"
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && string(b) == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

var victimRE = regexp.MustCompile(`victim-ip=(127\.\d+\.\d+\.\d+)`)

func TestSandboxProbeJob(t *testing.T) {
	t.Parallel()
	const submitter = "submitter-secret-0123456789abcdef"
	tokens := writeTemp(t, "tokens.toml", fmt.Sprintf(`[[token]]
name = "ci"
secret = %q
role = "submitter"
`, submitter))
	tokensBefore, err := os.ReadFile(tokens)
	require.NoError(t, err)
	data := t.TempDir()
	labFile := writeTemp(t, "lab.toml", sandboxedLab)
	srv := startServe(t, "--lab", labFile, "--data", data, "--token-file", tokens)
	u, err := url.Parse(srv.url)
	require.NoError(t, err)
	port := u.Port()
	serverPID := srv.cmd.Process.Pid

	// The victim: a job of another group, listening on its address (and
	// reaching itself there: the listener works).
	victim := secSubmit(t, srv.url, submitter, `name = "victim"
timeout = "3m"
[roles.v]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "listen"
timeout = "2m"
run = '''
nc -lk "$TROUPE_IP" 7000 </dev/null >/dev/null 2>&1 &
ok=no
for i in $(seq 1 50); do if nc -z -w 1 "$TROUPE_IP" 7000; then ok=yes; break; fi; sleep 0.1; done
echo "victim-listening=$ok"
echo "victim-ip=$TROUPE_IP"
sleep 90
'''
`)
	_, logs := secWait(t, srv.url, submitter, victim, 2*time.Minute, "listening", func(j server.Job, logs string) bool {
		return victimRE.MatchString(logs) || ended(j)
	})
	m := victimRE.FindStringSubmatch(logs)
	require.NotNil(t, m, "the victim did not start listening:\n%s", logs)
	require.Contains(t, logs, "victim-listening=yes", "the victim cannot reach its own listener: the probe below would prove nothing")
	victimIP := m[1]

	// The probe: every attack is a test case that passes when it fails.
	probe := secSubmit(t, srv.url, submitter, fmt.Sprintf(`name = "probe"
timeout = "3m"
[roles.p]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "attacks"
timeout = "2m"
run = '''
blocked() { name=$1; shift; if "$@" >/dev/null 2>&1; then troupe-test-case "$name" --result fail; else troupe-test-case "$name" --result pass; fi; }
blocked read-token-file cat %[1]q
blocked list-data-dir ls %[2]q
blocked read-store cat %[2]q/troupe.db
blocked write-data-dir sh -c 'echo pwned > %[2]s/pwned'
blocked read-lab-file cat %[3]q
blocked signal-server kill -9 %[4]d
blocked host-loopback-port nc -z -w 2 127.0.0.1 %[5]s
blocked other-group nc -z -w 2 %[6]s 7000
setsid env -i sleep 1717 < /dev/null > /dev/null 2>&1 &
troupe-test-case left-behind --result pass
'''
`, tokens, data, labFile, serverPID, port, victimIP))
	j, logs := secWait(t, srv.url, submitter, probe, 2*time.Minute, "ended", func(j server.Job, _ string) bool { return ended(j) })
	assert.Equal(t, "complete", j.Status, "%+v\n%s", j, logs)
	results := map[string]string{}
	for _, c := range j.Tests {
		results[c.Name] = c.Result
	}
	for _, c := range []string{"read-token-file", "list-data-dir", "read-store", "write-data-dir", "read-lab-file",
		"signal-server", "host-loopback-port", "other-group", "left-behind"} {
		assert.Equal(t, "pass", results[c], "attack %s was not blocked (fail) or not tried (empty)\n%s", c, logs)
	}

	// Nothing else changed: the server serves, the token file is intact, the
	// data dir has no foreign file, nothing of the probe's board lives on.
	select {
	case <-srv.exited:
		t.Fatalf("the server died:\n%s", srv.out.String())
	default:
	}
	code, _ := secAPI(t, "GET", srv.url+"/api/v1/jobs", submitter, "")
	assert.Equal(t, http.StatusOK, code)
	tokensAfter, err := os.ReadFile(tokens)
	require.NoError(t, err)
	assert.Equal(t, tokensBefore, tokensAfter)
	assert.NoFileExists(t, filepath.Join(data, "pwned"))
	deadline := time.Now().Add(30 * time.Second)
	for len(hostProcs("sleep", "1717")) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // deadline poll: the board is powered off after the job's end
	}
	assert.Empty(t, hostProcs("sleep", "1717"), "a process the probe left behind outlived its job")

	code, body := secAPI(t, "POST", srv.url+"/api/v1/jobs/"+victim+"/cancel", submitter, "")
	assert.True(t, code/100 == 2, "cancel: %d %s", code, body)
	secWait(t, srv.url, submitter, victim, time.Minute, "ended", func(j server.Job, _ string) bool { return ended(j) })
}

// refusingKernel runs troupe with args where the kernel refuses user
// namespaces: in a user namespace whose user.max_user_namespaces is 0.
func refusingKernel(t *testing.T, args ...string) runResult {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	for i, a := range args {
		if a == "OUT" {
			args[i] = out
		}
	}
	cmd := exec.Command("unshare", append([]string{"--user", "--map-root-user", "sh", "-c",
		`echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"`, "sh", troupeBin}, args...)...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	cmd.WaitDelay = time.Second
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("troupe %v did not end; stdout:\n%s\nstderr:\n%s", args, so.String(), se.String())
	}
	return runResult{code: cmd.ProcessState.ExitCode(), stdout: so.String(), stderr: se.String(), out: out}
}

func TestSandboxRefusedByTheKernel(t *testing.T) {
	t.Parallel()
	job := writeJob(t, `name = "refused"
[roles.a]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "t"
run = "troupe-test-case ok --result pass"
`)
	res := refusingKernel(t, "run", "--out", "OUT", job)
	assert.Equal(t, exitIncomplete, res.code, res.stdout+res.stderr)
	assert.Contains(t, res.stderr, "the kernel refused them (user.max_user_namespaces=0)")
	assert.Contains(t, res.stderr, `sandbox = "none"`)
	assert.NoFileExists(t, filepath.Join(res.out, "results.json"))

	res = refusingKernel(t, "serve", "--lab", writeTemp(t, "lab.toml", sandboxedLab), "--data", t.TempDir(), "--addr", "127.0.0.1:0")
	assert.NotEqual(t, 0, res.code, res.stdout+res.stderr)
	assert.Contains(t, res.stderr, "user.max_user_namespaces=0")

	// Unless the lab says so: then the job runs, with a warning.
	unsandboxed := writeTemp(t, "lab.toml", "sandbox = \"none\"\n"+sandboxedLab)
	res = refusingKernel(t, "run", "--lab", unsandboxed, "--out", "OUT", job)
	assert.Equal(t, 0, res.code, res.stdout+res.stderr)
	assert.Contains(t, res.stderr, `sim boards are not sandboxed (lab sandbox = \"none\")`)
	assert.FileExists(t, filepath.Join(res.out, "results.json"))
}

// sandboxedLab is serveLab with its sim boards sandboxed (the default).
var sandboxedLab = strings.Replace(serveLab, "sandbox = \"none\"\n", "", 1)
