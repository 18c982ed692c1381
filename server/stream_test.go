package server

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// frame is any frame of a job stream.
type frame struct {
	Seq    uint64          `json:"seq"`
	Time   time.Time       `json:"time"`
	Node   string          `json:"node"`
	Text   string          `json:"text"`
	Type   string          `json:"type"`
	Status string          `json:"status"`
	Phase  string          `json:"phase"`
	Job    json.RawMessage `json:"job"`
}

func dial(t *testing.T, url, token string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(url, "http"), h)
	if err == nil {
		t.Cleanup(func() { _ = conn.Close() })
	}
	return conn, resp, err
}

// dialSmall dials with a small socket receive buffer.
func dialSmall(t *testing.T, url string) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDialContext: (&net.Dialer{
		Control: func(_, _ string, c syscall.RawConn) error {
			var err error
			_ = c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			return err
		},
	}).DialContext}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(url, "http"), nil)
	if err == nil {
		t.Cleanup(func() { _ = conn.Close() })
	}
	return conn, resp, err
}

// read reads frames until the connection ends or stop says so.
func read(t *testing.T, conn *websocket.Conn, stop func(frame) bool) []frame {
	t.Helper()
	var fs []frame
	for {
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
		_, data, err := conn.ReadMessage()
		if err != nil {
			require.True(t, websocket.IsCloseError(err, websocket.CloseNormalClosure), "read: %v (after %d frames)", err, len(fs))
			return fs
		}
		var f frame
		require.NoError(t, json.Unmarshal(data, &f))
		fs = append(fs, f)
		if stop != nil && stop(f) {
			return fs
		}
	}
}

// lines are the log lines among fs.
func lines(fs []frame) []frame {
	var ls []frame
	for _, f := range fs {
		if f.Type == "" {
			ls = append(ls, f)
		}
	}
	return ls
}

const countJob = `name = "count"
timeout = "2m"
[roles.a]
device_type = "sim"
count = 1
[roles.b]
device_type = "sim"
count = 1
[[action]]
type = "boot"
[[action]]
type = "test"
name = "count"
run = '''
for i in $(seq 1 %d); do echo "line-$TROUPE_NODE-$i"; %s done
troupe-test-case counted --shell true
'''
`

// requireComplete checks that ls is every line of the log from seq 1 on,
// once, in order, with both nodes' numbered lines all there in order.
func requireComplete(t *testing.T, ls []frame, n int) {
	t.Helper()
	next := map[string]int{"a-0": 1, "b-0": 1}
	for i, l := range ls {
		require.Equal(t, uint64(i+1), l.Seq, "no gap, no duplicate")
		var node string
		var k int
		if _, err := fmt.Sscanf(l.Text, "line-%3s-%d", &node, &k); err == nil && strings.HasPrefix(l.Text, "line-") {
			require.Equal(t, next[node], k, "line %q in order", l.Text)
			next[node]++
		}
	}
	require.Equal(t, map[string]int{"a-0": n + 1, "b-0": n + 1}, next, "every numbered line")
}

func TestStreamReplaysThenLiveAndResumesWithoutGapOrRepeat(t *testing.T) {
	x := start(t, t.TempDir(), simLab(t, 2, 1), nil)
	id := x.submit(t, "", fmt.Sprintf(countJob, 40, "sleep 0.02;"))
	x.awaitLog(t, id, "line-a-0-5", 30*time.Second)

	base := x.url + "/api/v1/jobs/" + id + "/stream"
	conn, _, err := dial(t, base, "")
	require.NoError(t, err)
	first := read(t, conn, func(f frame) bool { return f.Type == "" && strings.HasPrefix(f.Text, "line-b-0-2") })
	_ = conn.Close()
	ls := lines(first)
	last := ls[len(ls)-1].Seq

	// Resume from where the first connection stopped, until the end.
	conn, _, err = dial(t, fmt.Sprintf("%s?from=%d", base, last+1), "")
	require.NoError(t, err)
	rest := read(t, conn, nil)
	end := rest[len(rest)-1]
	require.Equal(t, "end", end.Type)
	require.Equal(t, "complete", end.Status)
	var j Job
	require.NoError(t, json.Unmarshal(end.Job, &j))
	require.NotEmpty(t, j.Tests, "the end frame carries the results")
	requireComplete(t, append(ls, lines(rest)...), 40)
	var sawRunning bool
	for _, f := range append(first, rest...) {
		sawRunning = sawRunning || (f.Type == "status" && f.Status == "running")
	}
	require.True(t, sawRunning, "a status frame while it ran")

	// After the end, the same stream is served from the log file, and
	// again after a restart.
	conn, _, err = dial(t, base, "")
	require.NoError(t, err)
	again := read(t, conn, nil)
	requireComplete(t, lines(again), 40)
	require.Equal(t, "end", again[len(again)-1].Type)
}

func TestStreamNodeFilter(t *testing.T) {
	x := start(t, t.TempDir(), simLab(t, 2, 1), nil)
	id := x.submit(t, "", fmt.Sprintf(countJob, 10, ""))
	conn, _, err := dial(t, x.url+"/api/v1/jobs/"+id+"/stream?node=b-0", "")
	require.NoError(t, err)
	fs := read(t, conn, nil)
	ls := lines(fs)
	require.NotEmpty(t, ls)
	var n int
	for i, l := range ls {
		require.Equal(t, "b-0", l.Node)
		if i > 0 {
			require.Greater(t, l.Seq, ls[i-1].Seq, "merged-log seq numbers, increasing")
		}
		if strings.HasPrefix(l.Text, "line-b-0-") {
			n++
		}
	}
	require.Equal(t, 10, n)
	require.Equal(t, "end", fs[len(fs)-1].Type)
}

func TestStreamTellsASlowClientItLaggedAndItCanResume(t *testing.T) {
	defer func(n, m int) { streamBuffer, sendBuffer = n, m }(streamBuffer, sendBuffer)
	// Small buffers everywhere, so that the client not reading is felt.
	streamBuffer, sendBuffer = 4, 4096
	x := start(t, t.TempDir(), simLab(t, 2, 1), nil)
	// Long lines, fast: far more than the socket buffers hold.
	// The job prints once the client follows it live (not from the
	// replay, which cannot lag).
	// The gate is opened once both boards wait for it: a board's HOME
	// starts empty when the job opens it, so a gate written earlier goes.
	job := strings.Replace(fmt.Sprintf(countJob, 1500, `printf '%0800d\n' 0;`), "for i in", `echo "gate-$TROUPE_NODE"; while [ ! -e "$HOME/go" ]; do sleep 0.05; done`+"\nfor i in", 1)
	// ... and goes on a while: a client dropped from a job that has ended
	// gets the rest from the log file and the end, not a lag.
	job = strings.Replace(job, "troupe-test-case counted", "sleep 3; troupe-test-case counted", 1)
	id := x.submit(t, "", job)
	base := x.url + "/api/v1/jobs/" + id + "/stream"
	conn, _, err := dialSmall(t, base)
	require.NoError(t, err)
	first := read(t, conn, func(f frame) bool { return f.Type == "status" })
	x.awaitLog(t, id, "gate-a-0", time.Minute)
	x.awaitLog(t, id, "gate-b-0", time.Minute)
	x.openGate(t, "go")
	x.awaitLog(t, id, "line-b-0-1500", 3*time.Minute) // the client reads nothing meanwhile; 2.4 MB through two sandboxed consoles

	all := lines(first)
	lagged := 0
	for {
		fs := read(t, conn, func(f frame) bool { return f.Type == "lagged" })
		all = append(all, lines(fs)...)
		last := fs[len(fs)-1]
		if last.Type == "end" {
			break
		}
		require.Equal(t, "lagged", last.Type)
		lagged++
		require.Less(t, lagged, 1000)
		want := uint64(0)
		if len(all) > 0 {
			want = all[len(all)-1].Seq
		}
		require.Equal(t, want, last.Seq, "lagged names the last line sent")
		_ = conn.Close()
		conn, _, err = dialSmall(t, fmt.Sprintf("%s?from=%d", base, last.Seq+1))
		require.NoError(t, err)
	}
	require.Positive(t, lagged, "the slow client was told")
	requireComplete(t, all, 1500)
}

func TestStreamAuthAndBadRequests(t *testing.T) {
	tokens := []Token{{Name: "v", Secret: "viewer-secret-0123456789", Role: Viewer}, {Name: "s", Secret: "submitter-secret-0123456789", Role: Submitter}}
	x := start(t, t.TempDir(), simLab(t, 2, 1), tokens)
	id := x.submit(t, tokens[1].Secret, fmt.Sprintf(countJob, 3, ""))
	base := x.url + "/api/v1/jobs/" + id + "/stream"
	_, resp, err := dial(t, base, "")
	require.Error(t, err)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	_, resp, err = dial(t, base+"?token=nope", "")
	require.Error(t, err)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	conn, _, err := dial(t, base+"?token="+tokens[0].Secret, "")
	require.NoError(t, err, "browsers pass the token in the URL")
	fs := read(t, conn, nil)
	require.Equal(t, "end", fs[len(fs)-1].Type)
	conn, _, err = dial(t, base, tokens[0].Secret)
	require.NoError(t, err)
	_ = conn.Close()

	for _, q := range []string{"?from=0", "?from=x", "?from=-1"} {
		_, resp, err = dial(t, base+q, tokens[0].Secret)
		require.Error(t, err)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, q)
	}
	_, resp, err = dial(t, x.url+"/api/v1/jobs/999/stream", tokens[0].Secret)
	require.Error(t, err)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	code, _ := call(t, "GET", base, tokens[0].Secret, "", "")
	require.Equal(t, http.StatusBadRequest, code, "not a WebSocket request")
}

func TestEventsTellEveryStatusChange(t *testing.T) {
	x := start(t, t.TempDir(), simLab(t, 1, 1), nil)
	queued := x.submit(t, "", testJob("first", "sleep 0.5"))
	conn, _, err := dial(t, x.url+"/api/v1/events", "")
	require.NoError(t, err)
	second := x.submit(t, "", testJob("second", "true"))
	seen := map[string][]string{}
	deadline := time.Now().Add(time.Minute)
	for len(seen[second]) == 0 || seen[second][len(seen[second])-1] != "complete" {
		require.True(t, time.Now().Before(deadline), "events so far: %v", seen)
		require.NoError(t, conn.SetReadDeadline(deadline))
		var ev liveEvent
		require.NoError(t, conn.ReadJSON(&ev))
		require.Equal(t, "job", ev.Type)
		st := seen[ev.Job.ID]
		if len(st) == 0 || st[len(st)-1] != ev.Job.Status {
			seen[ev.Job.ID] = append(st, ev.Job.Status)
		}
	}
	require.Equal(t, []string{"queued", "running", "complete"}, seen[second])
	require.Contains(t, seen[queued], "complete")
	require.Contains(t, []string{"queued", "running"}, seen[queued][0], "the first frames are the jobs not yet ended")
}
