package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lab"
)

// simLab is a lab of n sim boards sim-0..., sandboxed as in production.
func simLab(t *testing.T, n int, retries int) *lab.Lab {
	var b strings.Builder
	fmt.Fprintf(&b, "retries = %d\n", retries)
	for i := range n {
		fmt.Fprintf(&b, "[[board]]\nname = \"sim-%d\"\ndevice_type = \"sim\"\n", i)
	}
	l, err := lab.Parse("test-lab.toml", []byte(b.String()))
	require.NoError(t, err)
	return l
}

// openGate creates the empty file name in the HOME of every board of x
// (its sandbox's /root: Data/boards/<board>/root on the host), for a
// script that waits for "$HOME/name" before it goes on. Call it once the
// job's script runs: a board's HOME is emptied when a job opens the board.
func (x *testServer) openGate(t *testing.T, name string) {
	t.Helper()
	for _, b := range x.cfg.Lab.Boards {
		home := filepath.Join(x.cfg.Data, "boards", b.Name, "root")
		require.NoError(t, os.MkdirAll(home, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(home, name), nil, 0o644))
	}
}

type testServer struct {
	*Server
	url  string
	http *httptest.Server
}

// start runs a server on data with l and tokens, served on loopback.
func start(t *testing.T, data string, l *lab.Lab, tokens []Token) *testServer {
	t.Helper()
	return startConfig(t, Config{Lab: l, Data: data, Tokens: tokens})
}

// startConfig runs a server of cfg on its own HTTP server (limits
// included), served on loopback.
func startConfig(t *testing.T, cfg Config) *testServer {
	t.Helper()
	s, err := New(cfg)
	require.NoError(t, err)
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = s.HTTPServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ts.Listener = s.Listener(ln)
	ts.Start()
	x := &testServer{Server: s, url: ts.URL, http: ts}
	t.Cleanup(x.stop)
	return x
}

// stop closes the HTTP server and the server; idempotent.
func (x *testServer) stop() {
	if x.http == nil {
		return
	}
	x.http.CloseClientConnections()
	x.http.Close()
	_ = x.Server.Close()
	x.http = nil
}

// call makes a request; token "" sends none.
func call(t *testing.T, method, url, token, ctype, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set(ClientHeader, "test")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(data)
}

// submit posts a job and returns its ID.
func (x *testServer) submit(t *testing.T, token, job string) string {
	t.Helper()
	code, body := call(t, "POST", x.url+"/api/v1/jobs", token, "", job)
	require.Equal(t, http.StatusCreated, code, body)
	var r struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(body), &r))
	require.NotEmpty(t, r.ID)
	return r.ID
}

func (x *testServer) job(t *testing.T, id string) Job {
	t.Helper()
	code, body := call(t, "GET", x.url+"/api/v1/jobs/"+id, "", "", "")
	require.Equal(t, http.StatusOK, code, body)
	var j Job
	require.NoError(t, json.Unmarshal([]byte(body), &j))
	return j
}

// await waits until job id has one of the statuses.
func (x *testServer) await(t *testing.T, id string, within time.Duration, statuses ...string) Job {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		j := x.job(t, id)
		for _, s := range statuses {
			if j.Status == s {
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %s after %v, want %v (error %q)", id, j.Status, within, statuses, j.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testJob is a one-node job whose test runs script.
func testJob(name, script string) string {
	return fmt.Sprintf(`name = %q
timeout = "2m"
[roles.node]
device_type = "sim"
count = 1
[[action]]
type = "boot"
[[action]]
type = "test"
name = "t"
run = '''
%s
'''
`, name, script)
}
