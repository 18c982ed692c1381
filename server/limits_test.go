package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/store"
)

// rawConn dials the server without an HTTP client.
func rawConn(t *testing.T, x *testServer) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(x.url, "http://"), 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// closedWithin tells whether the server closes c within d (reading
// whatever it still sends).
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	return err == nil // EOF: the server closed it; a timeout: it did not
}

// getOn sends GET path on c and reads the answer.
func getOn(t *testing.T, c net.Conn, br *bufio.Reader, host, path string) int {
	t.Helper()
	_, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host)
	require.NoError(t, err)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func TestIdleConnectionsAndSlowHeadersAreClosed(t *testing.T) {
	x := startConfig(t, Config{Lab: simLab(t, 1, 1), Data: t.TempDir(),
		Limits: Limits{IdleTimeout: 300 * time.Millisecond, ReadHeaderTimeout: 300 * time.Millisecond}})
	host := strings.TrimPrefix(x.url, "http://")

	idle := rawConn(t, x)
	require.Equal(t, http.StatusOK, getOn(t, idle, bufio.NewReader(idle), host, "/api/v1/healthz"))
	assert.True(t, closedWithin(idle, 10*time.Second), "an idle keep-alive connection is closed")

	slow := rawConn(t, x)
	_, err := fmt.Fprintf(slow, "GET /api/v1/healthz HTTP/1.1\r\nHost: %s\r\n", host) // never ends its headers
	require.NoError(t, err)
	assert.True(t, closedWithin(slow, 10*time.Second), "a request whose headers never end is closed")
}

func TestSlowBodyIsCutOff(t *testing.T) {
	x := startConfig(t, Config{Lab: simLab(t, 1, 1), Data: t.TempDir(), Limits: Limits{BodyTimeout: 300 * time.Millisecond}})
	c := rawConn(t, x)
	job := testJob("slow", "true")
	_, err := fmt.Fprintf(c, "POST /api/v1/jobs HTTP/1.1\r\nHost: %s\r\nContent-Type: application/toml\r\nContent-Length: %d\r\n\r\n%s",
		strings.TrimPrefix(x.url, "http://"), len(job), job[:10]) // the rest never comes
	require.NoError(t, err)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err, "the server answers a body that stalls")
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusRequestTimeout, resp.StatusCode, string(body))
	_, list := call(t, "GET", x.url+"/api/v1/jobs", "", "", "")
	require.JSONEq(t, `[]`, list)

	// A GET with a body that never ends is answered, then cut off too.
	g := rawConn(t, x)
	_, err = fmt.Fprintf(g, "GET /api/v1/healthz HTTP/1.1\r\nHost: %s\r\nContent-Length: 100000\r\n\r\nxx", strings.TrimPrefix(x.url, "http://"))
	require.NoError(t, err)
	assert.True(t, closedWithin(g, 10*time.Second), "a GET whose body stalls is closed")
}

func TestConnectionsPerAddressAreCapped(t *testing.T) {
	x := startConfig(t, Config{Lab: simLab(t, 1, 1), Data: t.TempDir(), Limits: Limits{ConnsPerAddr: 3}})
	host := strings.TrimPrefix(x.url, "http://")
	var held []net.Conn
	for range 3 {
		c := rawConn(t, x)
		require.Equal(t, http.StatusOK, getOn(t, c, bufio.NewReader(c), host, "/api/v1/healthz"))
		held = append(held, c)
	}
	extra := rawConn(t, x)
	_, _ = fmt.Fprintf(extra, "GET /api/v1/healthz HTTP/1.1\r\nHost: %s\r\n\r\n", host)
	_ = extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := http.ReadResponse(bufio.NewReader(extra), nil)
	require.Error(t, err, "a 4th connection from the same address is closed unanswered")
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "closed, not left hanging: %v", err)

	// A place freed is a place to take.
	require.NoError(t, held[0].Close())
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", host, 5*time.Second)
		require.NoError(t, err)
		_, _ = fmt.Fprintf(c, "GET /api/v1/healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		_ = c.Close()
		if err == nil {
			require.Equal(t, http.StatusOK, resp.StatusCode)
			break
		}
		require.True(t, time.Now().Before(deadline), "no place freed after a connection closed: %v", err)
		time.Sleep(20 * time.Millisecond) // polling for the server to notice the close
	}
}

func TestQueryTokenOnlyOnWebSocketRoutes(t *testing.T) {
	tok := Token{Name: "v", Secret: "viewer-secret-0123456789", Role: Viewer}
	x := start(t, t.TempDir(), simLab(t, 1, 1), []Token{tok})
	for _, path := range []string{"/api/v1/jobs", "/api/v1/devices", "/api/v1/jobs/1/logs"} {
		code, body := raw(t, "GET", x.url+path+"?token="+tok.Secret, "", map[string]string{
			"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
		assert.Equal(t, http.StatusUnauthorized, code, "%s: %s", path, body)
	}
	conn, _, err := dial(t, x.url+"/api/v1/events?token="+tok.Secret, "")
	require.NoError(t, err, "the events WebSocket takes ?token=")
	_ = conn.Close()
}

func TestCancelOnlyBySubmitterOrAdmin(t *testing.T) {
	tokens := []Token{
		{Name: "ci", Secret: "ci-secret-0123456789", Role: Submitter},
		{Name: "other", Secret: "other-secret-0123456789", Role: Submitter},
		{Name: "boss", Secret: "admin-secret-0123456789", Role: Admin},
	}
	x := start(t, t.TempDir(), simLab(t, 1, 1), tokens)
	a := x.submit(t, tokens[0].Secret, testJob("a", "sleep 600"))
	b := x.submit(t, tokens[0].Secret, testJob("b", "sleep 600"))

	code, body := call(t, "POST", x.url+"/api/v1/jobs/"+a+"/cancel", tokens[1].Secret, "", "")
	require.Equal(t, http.StatusForbidden, code, body)
	require.Contains(t, body, `submitted by \"ci\"`)
	require.Contains(t, []string{"queued", "running"}, x.jobAs(t, a, tokens[0].Secret).Status, "still alive")

	code, body = call(t, "POST", x.url+"/api/v1/jobs/"+b+"/cancel", tokens[2].Secret, "", "")
	require.Equal(t, http.StatusAccepted, code, "an admin cancels anyone's job: %s", body)
	code, body = call(t, "POST", x.url+"/api/v1/jobs/"+a+"/cancel", tokens[0].Secret, "", "")
	require.Equal(t, http.StatusAccepted, code, "the submitter cancels its own job: %s", body)
	for _, id := range []string{a, b} {
		deadline := time.Now().Add(time.Minute)
		for x.jobAs(t, id, tokens[0].Secret).Status != "canceled" {
			require.True(t, time.Now().Before(deadline), "job %s canceled", id)
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// submitKey posts job with an Idempotency-Key and returns status and id.
func submitKey(t *testing.T, x *testServer, key, job string) (int, string) {
	t.Helper()
	code, body := raw(t, "POST", x.url+"/api/v1/jobs", job, map[string]string{"Content-Type": "application/toml", "Idempotency-Key": key})
	var r struct{ ID string }
	_ = json.Unmarshal([]byte(body), &r)
	return code, r.ID
}

func TestIdempotencyKeyReturnsTheFirstJob(t *testing.T) {
	data := t.TempDir()
	x := start(t, data, simLab(t, 1, 1), nil)
	job := testJob("once", "true")
	code, first := submitKey(t, x, "retry-7f3a", job)
	require.Equal(t, http.StatusCreated, code)
	code, again := submitKey(t, x, "retry-7f3a", job)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, first, again)
	code, other := submitKey(t, x, "retry-other", job)
	require.Equal(t, http.StatusCreated, code)
	require.NotEqual(t, first, other)
	code, _ = submitKey(t, x, strings.Repeat("k", 256), job)
	require.Equal(t, http.StatusBadRequest, code)
	x.await(t, first, time.Minute, "complete", "incomplete")
	x.await(t, other, time.Minute, "complete", "incomplete")
	x.stop()

	y := start(t, data, simLab(t, 1, 1), nil)
	code, again = submitKey(t, y, "retry-7f3a", job)
	require.Equal(t, http.StatusOK, code, "the key survives a restart")
	require.Equal(t, first, again)
	var list []Summary
	_, body := call(t, "GET", y.url+"/api/v1/jobs", "", "", "")
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Len(t, list, 2)
}

func TestRetentionKeepsTheNewestJobs(t *testing.T) {
	data := t.TempDir()
	x := startConfig(t, Config{Lab: simLab(t, 1, 1), Data: data, Keep: 1})
	a := x.submit(t, "", testJob("a", "true"))
	x.await(t, a, time.Minute, "complete")
	b := x.submit(t, "", testJob("b", "true"))
	x.await(t, b, time.Minute, "complete")
	deadline := time.Now().Add(time.Minute)
	for {
		code, _ := call(t, "GET", x.url+"/api/v1/jobs/"+a, "", "", "")
		if code == http.StatusNotFound {
			break
		}
		require.True(t, time.Now().Before(deadline), "job %s pruned once %s ended", a, b)
		time.Sleep(20 * time.Millisecond)
	}
	require.NoDirExists(t, filepath.Join(data, "jobs", a))
	require.DirExists(t, filepath.Join(data, "jobs", b))
	x.stop()

	st, err := store.Open(filepath.Join(data, "troupe.db"))
	require.NoError(t, err)
	recs, err := st.Jobs()
	require.NoError(t, err)
	require.NoError(t, st.Close())
	require.Len(t, recs, 1, "pruned from the store too")
	require.Equal(t, b, recs[0].ID)

	y := startConfig(t, Config{Lab: simLab(t, 1, 1), Data: data, Keep: 1})
	c := y.submit(t, "", testJob("c", "true"))
	require.Equal(t, "3", c, "a pruned job's ID is not given again")
}

func TestRetentionByAge(t *testing.T) {
	data := t.TempDir()
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	x := startConfig(t, Config{Lab: simLab(t, 1, 1), Data: data, KeepFor: 24 * time.Hour, Now: clock})
	a := x.submit(t, "", testJob("a", "true"))
	x.await(t, a, time.Minute, "complete")
	queued := x.submit(t, "", testJob("q", "sleep 600")) // never pruned while not ended
	x.await(t, queued, time.Minute, "running")
	x.stop()

	mu.Lock()
	now = now.Add(25 * time.Hour)
	mu.Unlock()
	y := startConfig(t, Config{Lab: simLab(t, 1, 1), Data: data, KeepFor: 24 * time.Hour, Now: clock})
	code, _ := call(t, "GET", y.url+"/api/v1/jobs/"+a, "", "", "")
	require.Equal(t, http.StatusNotFound, code, "ended more than a day ago")
	require.NoDirExists(t, filepath.Join(data, "jobs", a))
	code, _ = call(t, "GET", y.url+"/api/v1/jobs/"+queued, "", "", "")
	require.Equal(t, http.StatusOK, code, "the re-queued job stays")
}

// TestLogCapInAJob: a test printing without end is cut at the lab's
// log_limit with one marker, and the job goes on to pass.
func TestLogCapInAJob(t *testing.T) {
	l := simLab(t, 1, 1)
	l.LogLimit = 8 << 10
	x := startConfig(t, Config{Lab: l, Data: t.TempDir()})
	id := x.submit(t, "", testJob("flood", `yes | head -c 100000
troupe-test-case after-the-flood --shell true`))
	j := x.await(t, id, 2*time.Minute, "complete", "incomplete")
	require.Equal(t, "complete", j.Status, j.Error)
	var passed bool
	for _, tc := range j.Tests {
		passed = passed || (tc.Name == "after-the-flood" && tc.Result == "pass")
	}
	require.True(t, passed, "the job went on: %+v", j.Tests)

	marker := logbook.Dropped(l.LogLimit)
	rawLog, err := os.ReadFile(filepath.Join(x.cfg.Data, "jobs", id, "logs", "node-0.log"))
	require.NoError(t, err)
	assert.LessOrEqual(t, int64(len(rawLog)), l.LogLimit+int64(len(marker))+2)
	assert.Equal(t, 1, strings.Count(string(rawLog), marker))
	_, group := call(t, "GET", x.url+"/api/v1/jobs/"+id+"/logs", "", "", "")
	assert.Equal(t, 1, strings.Count(group, marker))
	assert.Less(t, len(group), 8<<10+1000, "the merged log is cut too")
}

func TestNewStoreBesideJobFoldersRefusesToStart(t *testing.T) {
	data := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(data, "jobs", "1", "logs"), 0o755))
	_, err := New(Config{Lab: simLab(t, 1, 1), Data: data})
	require.ErrorIs(t, err, store.ErrDamaged)
	require.ErrorContains(t, err, "holds 1 job folders")
}

func TestNewJobsNeverReuseAFolder(t *testing.T) {
	data := t.TempDir()
	x := start(t, data, simLab(t, 1, 1), nil)
	a := x.submit(t, "", testJob("a", "true"))
	require.Equal(t, "1", a)
	x.await(t, a, time.Minute, "complete")
	stale := filepath.Join(data, "jobs", "2", "logs")
	require.NoError(t, os.MkdirAll(stale, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(stale, "group.log"), []byte("old\n"), 0o644))
	b := x.submit(t, "", testJob("b", "true"))
	require.Equal(t, "3", b, "job 2's folder exists")
	data2, err := os.ReadFile(filepath.Join(stale, "group.log"))
	require.NoError(t, err)
	require.Equal(t, "old\n", string(data2))
}
