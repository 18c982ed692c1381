package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/internal/lockedbuf"
)

// TestConsoleThroughServer: through the server with an admin token, the
// console of a board the caller reserved is interactive (pty, Ctrl-]
// leaves); someone else's is refused; while a job runs on the board the
// console shows the job's lines, read-only.
func TestConsoleThroughServer(t *testing.T) {
	t.Parallel()
	addr, sock := simboard(t, "ops-bbb", false)
	const admin, other = "admin-secret-0123456789", "other-admin-secret-0123456789"
	tokens := writeTemp(t, "tokens.toml", fmt.Sprintf("[[token]]\nname = \"boss\"\nsecret = %q\nrole = \"admin\"\n\n[[token]]\nname = \"deputy\"\nsecret = %q\nrole = \"admin\"\n", admin, other))
	labFile := writeTemp(t, "lab.toml", "retries = 0\n"+simboardEntry("ops-bbb", "bbb", addr, sock))
	srv := startServe(t, "--lab", labFile, "--data", t.TempDir(), "--token-file", tokens)
	env := func(token string) []string {
		var e []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "TROUPE_SERVER=") && !strings.HasPrefix(kv, "TROUPE_TOKEN=") {
				e = append(e, kv)
			}
		}
		return append(e, "TROUPE_SERVER="+srv.url, "TROUPE_TOKEN="+token)
	}
	as := func(token string, args ...string) runResult {
		return cli(t, []string{"TROUPE_SERVER=" + srv.url, "TROUPE_TOKEN=" + token}, args...)
	}
	r := as(admin, "reserve", "ops-bbb")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = as(other, "console", "ops-bbb")
	assert.Equal(t, exitIncomplete, r.code)
	assert.Contains(t, r.stderr, "device ops-bbb is not reserved by deputy")

	cmd := exec.Command(troupeBin, "console", "ops-bbb")
	cmd.Env = env(admin)
	c := startPTYConsole(t, cmd, "ops-bbb")
	r = as(admin, "power", "ops-bbb", "on")
	require.Equal(t, exitOK, r.code, r.stderr)
	c.loginAndLeave(t, "ops-bbb", "remote")
	r = as(admin, "power", "ops-bbb", "off")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = as(admin, "release", "ops-bbb")
	require.Equal(t, exitOK, r.code, r.stderr)

	// While a job runs: read-only, the job's lines.
	code, data := api(t, "POST", srv.url+"/api/v1/jobs", admin, "name = \"ticks\"\ntimeout = \"2m\"\n[roles.a]\ndevice_type = \"bbb\"\n[[action]]\ntype = \"boot\"\ntimeout = \"30s\"\n[[action]]\ntype = \"test\"\nname = \"tick\"\nrun = \"for i in 1 2 3 4 5 6 7 8; do echo tick-$i; sleep 1; done\"\n")
	require.Equal(t, http.StatusCreated, code, string(data))
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, devs := api(t, "GET", srv.url+"/api/v1/devices", admin, "")
		if strings.Contains(string(devs), `"job":"`) && !strings.Contains(string(devs), `"job":""`) {
			break
		}
		require.True(t, time.Now().Before(deadline), "the job never ran: %s", devs)
		time.Sleep(100 * time.Millisecond)
	}
	watch := exec.Command(troupeBin, "console", "ops-bbb")
	watch.Env = env(admin)
	in, err := watch.StdinPipe()
	require.NoError(t, err)
	defer in.Close()
	var so, se lockedbuf.Buffer
	watch.Stdout, watch.Stderr = &so, &se
	require.NoError(t, watch.Start())
	wdone := make(chan error, 1)
	go func() { wdone <- watch.Wait() }()
	select {
	case err := <-wdone:
		require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", so.String(), se.String())
	case <-time.After(90 * time.Second):
		_ = watch.Process.Kill()
		t.Fatalf("the read-only console did not end with the job\nstdout:\n%s\nstderr:\n%s", so.String(), se.String())
	}
	assert.Contains(t, se.String(), "read-only: job ")
	assert.Contains(t, so.String(), "tick-")
	assert.Contains(t, se.String(), "ended")
}
