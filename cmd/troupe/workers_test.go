package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/workers"
)

// The end-to-end tests of `troupe worker`: a server and worker processes
// on loopback with the lab CA's mutual TLS.

type workerProc struct{ *troupeProc }

// startWorkerProc starts `troupe worker` with args; the process is killed
// at the end of the test if it still runs.
func startWorkerProc(t *testing.T, args ...string) *workerProc {
	t.Helper()
	return &workerProc{startProc(t, append([]string{"worker"}, args...)...)}
}

func (p *workerProc) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		t.Fatalf("troupe worker did not exit:\n%s", p.out.String())
		return -1
	}
}

// workerLab writes a lab file of sim boards and returns its path.
func workerLab(t *testing.T, boards ...string) string {
	t.Helper()
	var b strings.Builder
	for _, n := range boards {
		fmt.Fprintf(&b, "[[board]]\nname = %q\ndevice_type = \"sim\"\n\n", n)
	}
	path := filepath.Join(t.TempDir(), "lab.toml")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	return path
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// listWorkers reads /api/v1/workers by name.
func listWorkers(t *testing.T, url string) map[string]workers.WorkerStatus {
	t.Helper()
	code, body := api(t, "GET", url+"/api/v1/workers", "", "")
	require.Equal(t, 200, code, "%s", body)
	var ws []workers.WorkerStatus
	require.NoError(t, json.Unmarshal(body, &ws))
	out := map[string]workers.WorkerStatus{}
	for _, w := range ws {
		out[w.Name] = w
	}
	return out
}

func waitWorkers(t *testing.T, url, what string, ok func(map[string]workers.WorkerStatus) bool, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ws := listWorkers(t, url)
		if ok(ws) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %+v", what, within, ws)
		}
		time.Sleep(100 * time.Millisecond) // a deadline poll of the API
	}
}

func TestWorkersMutualTLS(t *testing.T) {
	ca := t.TempDir()
	require.Equal(t, 0, troupe(t, "ca", "init", ca).code)
	for _, w := range []string{"w1", "w2", "w3", "w4"} {
		r := troupe(t, "ca", "issue", ca, "--name", w)
		require.Equal(t, 0, r.code, r.stderr)
	}
	assert.Equal(t, exitInvalid, troupe(t, "ca", "issue", ca, "--name", "w1").code, "issued twice")

	addr := freeAddr(t)
	data := t.TempDir()
	srv := startServe(t, "--data", data, "--workers", addr, "--tls", ca)
	worker := func(name, dir string, boards ...string) *workerProc {
		return startWorkerProc(t, "--server", addr, "--lab", workerLab(t, boards...), "--name", name, "--tls", dir, "--data", t.TempDir())
	}
	w1 := worker("w1", ca, "w1-a", "w1-b")
	worker("w2", ca, "w2-a", "w2-b")
	worker("w3", ca, "w3-a", "w3-b")
	all := func(ws map[string]workers.WorkerStatus) bool {
		return ws["w1"].Connected && ws["w2"].Connected && ws["w3"].Connected
	}
	waitWorkers(t, srv.url, "three workers joined", all, 30*time.Second)
	assert.Equal(t, []string{"w2-a", "w2-b"}, listWorkers(t, srv.url)["w2"].Boards)

	t.Run("a board of another worker is refused", func(t *testing.T) {
		p := worker("w4", ca, "w4-a", "w1-a")
		assert.Equal(t, exitInvalid, p.exitCode(t))
		assert.Contains(t, p.out.String(), "board w1-a belongs to worker w1")
		assert.Contains(t, srv.out.String(), "worker registration refused")
	})
	t.Run("a certificate of another worker is refused", func(t *testing.T) {
		// w4's certificate and key, filed as w1's: it claims to be w1.
		imp := t.TempDir()
		for from, to := range map[string]string{"ca.pem": "ca.pem", "w4.pem": "w1.pem", "w4-key.pem": "w1-key.pem"} {
			b, err := os.ReadFile(filepath.Join(ca, from))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(imp, to), b, 0o600))
		}
		worker("w1", imp, "w1-c")
		require.Eventually(t, func() bool { return strings.Contains(srv.out.String(), "names another worker") }, 30*time.Second, 50*time.Millisecond)
		assert.Equal(t, []string{"w1-a", "w1-b"}, listWorkers(t, srv.url)["w1"].Boards)
	})
	t.Run("a certificate of another CA is refused", func(t *testing.T) {
		foreign := t.TempDir()
		require.Equal(t, 0, troupe(t, "ca", "init", foreign).code)
		require.Equal(t, 0, troupe(t, "ca", "issue", foreign, "--name", "w5").code)
		b, err := os.ReadFile(filepath.Join(ca, "ca.pem")) // it trusts the lab's server
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(foreign, "ca.pem"), b, 0o644))
		worker("w5", foreign, "w5-a")
		require.Eventually(t, func() bool {
			return strings.Contains(srv.out.String(), "TLS peer refused") && strings.Contains(srv.out.String(), "not from the lab CA")
		}, 30*time.Second, 50*time.Millisecond)
		_, known := listWorkers(t, srv.url)["w5"]
		assert.False(t, known)
	})
	t.Run("without --tls a non-loopback address is refused", func(t *testing.T) {
		r := troupe(t, "worker", "--server", "192.0.2.1:8481", "--lab", workerLab(t, "x"), "--name", "w9")
		assert.Equal(t, exitInvalid, r.code)
		assert.Contains(t, r.stderr, "without --tls")
	})

	// kill -9 of a worker: noticed within 10 s, the others stay.
	require.NoError(t, w1.cmd.Process.Kill())
	start := time.Now()
	waitWorkers(t, srv.url, "w1 lost", func(ws map[string]workers.WorkerStatus) bool { return !ws["w1"].Connected }, 10*time.Second)
	t.Logf("w1 noticed lost after %s", time.Since(start).Round(time.Millisecond))
	ws := listWorkers(t, srv.url)
	assert.True(t, ws["w2"].Connected && ws["w3"].Connected)
	assert.Contains(t, srv.out.String(), "worker lost")
	r := troupe(t, "devices", "--server", srv.url)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `(?m)^w1\s+offline\s+127\.0\.0\.1:\d+\s+w1-a,w1-b$`, r.stdout)
	assert.Regexp(t, `(?m)^w2\s+online\s`, r.stdout)

	// It returns.
	worker("w1", ca, "w1-a", "w1-b")
	waitWorkers(t, srv.url, "w1 back", all, 30*time.Second)

	// The server is killed and restarted on the same addresses: the
	// workers join it again by themselves.
	srv.kill9(t)
	srv2 := startServe(t, "--data", data, "--workers", addr, "--tls", ca)
	waitWorkers(t, srv2.url, "workers rejoin a restarted server", all, 60*time.Second)
}

func TestWorkersInvalidInput(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"serve: workers on a non-loopback address without TLS", []string{"serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--workers", "0.0.0.0:0"}, "without --tls"},
		{"serve: worker timeout not positive", []string{"serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--workers", "127.0.0.1:0", "--worker-timeout", "0s"}, "--worker-timeout: want a positive duration"},
		{"worker: server timeout not positive", []string{"worker", "--server", "127.0.0.1:1", "--lab", "x.toml", "--server-timeout", "-1s"}, "--server-timeout: want a positive duration"},
		{"worker: no server", []string{"worker", "--lab", "x.toml"}, "--server and --lab are required"},
		{"worker: bad name", []string{"worker", "--server", "127.0.0.1:1", "--lab", "x.toml", "--name", "../etc"}, "worker name"},
		{"worker: unknown flag", []string{"worker", "--bogus"}, "usage: troupe worker"},
		{"worker: missing lab file", []string{"worker", "--server", "127.0.0.1:1", "--lab", "/nonexistent.toml", "--name", "w1"}, "nonexistent"},
		{"worker: TLS dir without its certificate", []string{"worker", "--server", "127.0.0.1:1", "--lab", "LAB", "--name", "w1", "--tls", t.TempDir()}, "certificate of w1"},
		{"ca: unknown subcommand", []string{"ca", "sign"}, "unknown subcommand"},
		{"ca issue: no name", []string{"ca", "issue", t.TempDir()}, "--name"},
		{"ca issue: no CA", []string{"ca", "issue", t.TempDir(), "--name", "w1"}, "lab CA"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for i, a := range c.args {
				if a == "LAB" {
					c.args[i] = workerLab(t, "b1")
				}
			}
			r := troupe(t, c.args...)
			assert.Equal(t, exitInvalid, r.code, r.stdout+r.stderr)
			assert.Contains(t, r.stderr, c.want)
		})
	}
}

// TestWorkerPowersOffLeftovers: a worker killed with a sim board on (its
// processes still running) powers it off when it starts again, before it
// joins. Without --tls, on loopback.
func TestWorkerPowersOffLeftovers(t *testing.T) {
	data := t.TempDir()
	board := filepath.Join(data, "boards", "w1-a")
	require.NoError(t, os.MkdirAll(board, 0o755))
	// A process of the dead worker's power-on: it carries the board's token.
	left := exec.Command("sleep", "300")
	left.Env = []string{"A=1", "TROUPE_SIM_TOKEN=leftover-token", "B=1"}
	require.NoError(t, left.Start())
	exited := make(chan struct{})
	go func() { _ = left.Wait(); close(exited) }()
	t.Cleanup(func() { _ = left.Process.Kill(); <-exited })
	require.NoError(t, os.WriteFile(filepath.Join(board, ".power-on"), []byte("leftover-token"), 0o644))

	addr := freeAddr(t)
	srv := startServe(t, "--data", t.TempDir(), "--workers", addr)
	startWorkerProc(t, "--server", addr, "--lab", workerLab(t, "w1-a"), "--name", "w1", "--data", data)
	waitWorkers(t, srv.url, "w1 joined", func(ws map[string]workers.WorkerStatus) bool { return ws["w1"].Connected }, 30*time.Second)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the leftover process of the board still runs after the worker joined")
	}
	assert.NoFileExists(t, filepath.Join(board, ".power-on"))
}
