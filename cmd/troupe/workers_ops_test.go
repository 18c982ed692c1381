package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWorkersPowerAndConsole: troupe power and troupe console reach a
// worker's hardware board through the server, with the permissions of the
// server's own boards: someone else's reservation is refused, a board
// that is not hardware is bad input; power switches the board on its
// worker and the console is interactive (login on the board, Ctrl-]
// leaves). Once the worker is killed, both fail naming the worker.
func TestWorkersPowerAndConsole(t *testing.T) {
	addr, sock := simboard(t, "ops-bbb", false)
	const admin, other = "admin-secret-0123456789", "other-admin-secret-0123456789"
	tokens := writeTemp(t, "tokens.toml", fmt.Sprintf("[[token]]\nname = \"boss\"\nsecret = %q\nrole = \"admin\"\n\n[[token]]\nname = \"deputy\"\nsecret = %q\nrole = \"admin\"\n", admin, other))
	ca, waddr := labCA(t, "w1"), freeAddr(t)
	srv := startServe(t, "--data", t.TempDir(), "--workers", waddr, "--tls", ca, "--token-file", tokens)
	labFile := writeTemp(t, "lab.toml", simboardEntry("ops-bbb", "bbb", addr, sock)+"\n[[board]]\nname = \"w1-sim\"\ndevice_type = \"sim\"\n")
	worker := startWorkerProc(t, "--server", waddr, "--lab", labFile, "--name", "w1", "--tls", ca, "--data", t.TempDir())
	deadline := time.Now().Add(time.Minute)
	for {
		_, devs := api(t, "GET", srv.url+"/api/v1/devices", admin, "")
		if strings.Contains(string(devs), `"name":"ops-bbb"`) {
			break
		}
		require.True(t, time.Now().Before(deadline), "the worker's boards never joined: %s\n%s", devs, worker.out.String())
		time.Sleep(50 * time.Millisecond)
	}
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
	r = as(other, "power", "ops-bbb", "on")
	assert.Equal(t, exitIncomplete, r.code)
	assert.Contains(t, r.stderr, "device ops-bbb is not reserved by deputy")
	r = as(other, "power", "ops-bbb", "status")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "ops-bbb: off\n", r.stdout)

	cmd := exec.Command(troupeBin, "console", "ops-bbb")
	cmd.Env = env(admin)
	c := startPTYConsole(t, cmd, "ops-bbb")
	r = as(admin, "power", "ops-bbb", "on")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "ops-bbb: on\n", r.stdout)
	assert.Equal(t, "on\n", troupe(t, "simboard", "power", sock, "status").stdout, "switched on the worker's side")
	c.loginAndLeave(t, "ops-bbb", "worker")
	r = as(admin, "power", "ops-bbb", "off")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "ops-bbb: off\n", r.stdout)
	assertBoardOff(t, sock)

	r = as(admin, "reserve", "w1-sim")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = as(admin, "power", "w1-sim", "on")
	assert.Equal(t, exitInvalid, r.code)
	assert.Contains(t, r.stderr, "board w1-sim: not a hardware board (backend sim)")
	r = as(admin, "console", "w1-sim")
	assert.Equal(t, exitIncomplete, r.code)
	assert.Contains(t, r.stderr, "board w1-sim: not a hardware board (backend sim)")

	require.NoError(t, worker.cmd.Process.Kill())
	deadline = time.Now().Add(30 * time.Second)
	for {
		_, devs := api(t, "GET", srv.url+"/api/v1/devices", admin, "")
		if strings.Contains(string(devs), `"connection":"offline"`) {
			break
		}
		require.True(t, time.Now().Before(deadline), "the worker was never lost: %s", devs)
		time.Sleep(100 * time.Millisecond)
	}
	for _, args := range [][]string{{"power", "ops-bbb", "on"}, {"power", "ops-bbb", "status"}, {"console", "ops-bbb"}} {
		r = as(admin, args...)
		assert.Equal(t, exitIncomplete, r.code, "%v", args)
		assert.Contains(t, r.stderr, "device ops-bbb: its worker w1 is lost (offline)", "%v", args)
	}
	r = as(admin, "release", "ops-bbb")
	assert.Equal(t, exitOK, r.code, "a lost worker's board can be released: %s", r.stderr)
}
