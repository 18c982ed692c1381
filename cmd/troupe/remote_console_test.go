package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConsoleThroughServer: through the server with an admin token, the
// console of a board the caller reserved is interactive (pty, Ctrl-]
// leaves); someone else's is refused; while a job runs on the board the
// console shows the job's lines, read-only.
func TestConsoleThroughServer(t *testing.T) {
	addr, sock := simboard(t, "ops-bbb", false)
	const admin, other = "admin-secret-0123456789", "other-admin-secret-0123456789"
	tokens := writeTemp(t, "tokens.toml", fmt.Sprintf("[[token]]\nname = \"boss\"\nsecret = %q\nrole = \"admin\"\n\n[[token]]\nname = \"deputy\"\nsecret = %q\nrole = \"admin\"\n", admin, other))
	labFile := writeTemp(t, "lab.toml", fmt.Sprintf("retries = 0\n[[board]]\nname = \"ops-bbb\"\ndevice_type = \"bbb\"\nbackend = \"hardware\"\n[board.console]\nkind = \"tcp\"\naddress = %q\n[board.power]\nkind = \"sim\"\nsocket = %q\n", addr, sock))
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
	tty, err := pty.Start(cmd)
	require.NoError(t, err)
	defer tty.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	})
	term := &ptyReader{}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			term.mu.Lock()
			term.buf.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	term.waitFor(t, "console of ops-bbb; Ctrl-] to leave", 10*time.Second)
	r = as(admin, "power", "ops-bbb", "on")
	require.Equal(t, exitOK, r.code, r.stderr)
	term.waitFor(t, "ops-bbb login:", 20*time.Second)
	_, err = io.WriteString(tty, "root\n")
	require.NoError(t, err)
	term.waitFor(t, "# ", 10*time.Second)
	_, err = io.WriteString(tty, "echo remote-$((6*7))\n")
	require.NoError(t, err)
	term.waitFor(t, "remote-42", 10*time.Second)
	_, err = tty.Write([]byte{0x1d})
	require.NoError(t, err)
	select {
	case err := <-done:
		require.NoError(t, err, term.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("Ctrl-] did not leave; terminal:\n%s", term.String())
	}
	term.waitFor(t, "left the console of ops-bbb", 2*time.Second)
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
	var so, se lockedBuffer
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
