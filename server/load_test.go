package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/server"
)

// The load test: 10 concurrent submitters × 100 small jobs on a lab of 20
// sim boards, while 50 WebSocket followers watch one job print 2000
// numbered lines.

const (
	loadBoards     = 20
	loadSubmitters = 10
	loadJobsEach   = 100
	loadFollowers  = 50
	loadLines      = 2000
)

// leakOptions are the goroutines of protoactor's dead-letter throttle,
// which may outlive a lab by a second (see actors/fakes_test.go).
var leakOptions = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
	goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottle.func1.1"),
}

// simLab is a lab of n sim boards, sim-0 … sim-<n-1>. Their shells are
// not sandboxed: the followed job waits for a file on the host (the
// sandbox is tested by package sim and TestSandboxProbeJob).
func simLab(tb testing.TB, n int) *lab.Lab {
	tb.Helper()
	var b strings.Builder
	b.WriteString("sandbox = \"none\"\n")
	for i := range n {
		fmt.Fprintf(&b, "[[board]]\nname = \"sim-%d\"\ndevice_type = \"sim\"\nbackend = \"sim\"\n\n", i)
	}
	l, err := lab.Parse("load-lab.toml", []byte(b.String()))
	require.NoError(tb, err)
	return l
}

// startServer runs a server on a lab of n sim boards behind an httptest
// server on 127.0.0.1; both are closed at the end of the test.
func startServer(tb testing.TB, boards int) string {
	tb.Helper()
	srv, err := server.New(server.Config{Lab: simLab(tb, boards), Data: tb.TempDir()})
	require.NoError(tb, err)
	ts := httptest.NewServer(srv.Handler())
	tb.Cleanup(func() {
		ts.Close()
		assert.NoError(tb, srv.Close())
	})
	return ts.URL
}

var loadClient = &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// call sends a request and returns the status and the body.
func call(method, url, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set(server.ClientHeader, "load-test")
	resp, err := loadClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// post submits a job and returns its ID.
func post(base, job string) (string, error) {
	code, data, err := call("POST", base+"/api/v1/jobs", job)
	if err != nil {
		return "", err
	}
	if code != http.StatusCreated {
		return "", fmt.Errorf("submit: %d %s", code, data)
	}
	var created struct{ ID string }
	if err := json.Unmarshal(data, &created); err != nil || created.ID == "" {
		return "", fmt.Errorf("submit: answer %s: %v", data, err)
	}
	return created.ID, nil
}

// getJSON gets url into out; anything but 200 is an error.
func getJSON(url string, out any) error {
	code, data, err := call("GET", url, "")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", url, code, data)
	}
	return json.Unmarshal(data, out)
}

// waitIdle polls until no job is queued or running, for at most d.
func waitIdle(tb testing.TB, base string, d time.Duration) {
	tb.Helper()
	waitIdleEvery(tb, base, d, 100*time.Millisecond)
}

// waitIdleEvery is waitIdle polling every given interval (a list of
// thousands of queued jobs is not free to serve).
func waitIdleEvery(tb testing.TB, base string, d, every time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		var left []server.Summary
		require.NoError(tb, getJSON(base+"/api/v1/jobs?status=queued,running", &left))
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d jobs still queued or running after %s", len(left), d)
		}
		time.Sleep(every)
	}
}

// smallJob is one node running a trivial test that prints token.
func smallJob(name, token string) string {
	return fmt.Sprintf(`name = %q
timeout = "5m"
[roles.a]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "t"
run = "echo ran %s"
`, name, token)
}

// printingJob waits until the file go exists, then prints n numbered
// lines ("line 1" …), pausing pause seconds after every batch of lines.
func printingJob(name, goFile string, n, batch int, pause string) string {
	return fmt.Sprintf(`name = %q
timeout = "5m"
[roles.p]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "print"
timeout = "4m"
run = '''
while [ ! -e %s ]; do sleep 0.02; done
i=1
while [ $i -le %d ]; do
  echo "line $i"
  if [ $((i %% %d)) -eq 0 ]; then sleep %s; fi
  i=$((i+1))
done
troupe-test-case printed --result pass
'''
`, name, goFile, n, batch, pause)
}

// frame is any frame of a job's stream.
type frame struct {
	Seq    uint64          `json:"seq"`
	Time   time.Time       `json:"time"`
	Node   string          `json:"node"`
	Text   string          `json:"text"`
	Type   string          `json:"type"`
	Status string          `json:"status"`
	Job    json.RawMessage `json:"job"`
}

// followed is what one follower saw of a job's stream.
type followed struct {
	lines    []int // the numbers of the "line N" frames, in order
	lagged   int   // times the server said it lagged (then it resumed)
	end      string
	dials    int
	seqError error // a gap or repeat in seq numbers
}

var lineRE = regexp.MustCompile(`^line (\d+)$`)

// follow reads job id's stream to its end frame, resuming from the last
// seq after a "lagged" frame. ready is called at the first status frame
// (the replay is done and the stream is live); onLine at every log line
// with its receive time.
func follow(ctx context.Context, base, id string, ready func(), onLine func(f frame, recv time.Time)) (*followed, error) {
	ws := "ws" + strings.TrimPrefix(base, "http")
	out := &followed{}
	next := uint64(1)
	for {
		out.dials++
		if out.dials > 20 {
			return out, fmt.Errorf("reconnected %d times", out.dials)
		}
		d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
		conn, _, err := d.DialContext(ctx, fmt.Sprintf("%s/api/v1/jobs/%s/stream?from=%d", ws, id, next), nil)
		if err != nil {
			return out, err
		}
		stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
		resume, err := func() (bool, error) {
			defer conn.Close()
			defer stop()
			for {
				_ = conn.SetReadDeadline(time.Now().Add(3 * time.Minute))
				_, data, err := conn.ReadMessage()
				recv := time.Now()
				if err != nil {
					return false, fmt.Errorf("read after seq %d: %w", next-1, err)
				}
				var f frame
				if err := json.Unmarshal(data, &f); err != nil {
					return false, fmt.Errorf("frame %s: %w", data, err)
				}
				switch f.Type {
				case "":
					if f.Seq != next && out.seqError == nil {
						out.seqError = fmt.Errorf("seq %d after %d", f.Seq, next-1)
					}
					next = f.Seq + 1
					if m := lineRE.FindStringSubmatch(f.Text); m != nil {
						n, _ := strconv.Atoi(m[1])
						out.lines = append(out.lines, n)
						if onLine != nil {
							onLine(f, recv)
						}
					}
				case "status":
					if ready != nil {
						ready()
						ready = nil
					}
				case "lagged":
					out.lagged++
					next = f.Seq + 1
					return true, nil
				case "end":
					out.end = f.Status
					return false, nil
				case "action": // a node's phase change: not a log line
				default:
					return false, fmt.Errorf("unknown frame %s", data)
				}
			}
		}()
		if err != nil || !resume {
			return out, err
		}
	}
}

// checkLines checks that got is 1 … n.
func checkLines(got []int, n int) error {
	if len(got) != n {
		return fmt.Errorf("%d lines, want %d", len(got), n)
	}
	for i, v := range got {
		if v != i+1 {
			return fmt.Errorf("line %d at position %d", v, i+1)
		}
	}
	return nil
}

// followers starts n followers of job id; once all are live (or failed),
// it creates goFile. wait returns every follower's outcome.
func followers(ctx context.Context, base, id string, n int, goFile string, onLine func(f frame, recv time.Time)) (wait func() ([]*followed, []error)) {
	var live, done sync.WaitGroup
	live.Add(n)
	outs := make([]*followed, n)
	errs := make([]error, n)
	for i := range n {
		done.Go(func() {
			once := sync.OnceFunc(live.Done)
			defer once()
			outs[i], errs[i] = follow(ctx, base, id, once, onLine)
		})
	}
	go func() {
		live.Wait()
		_ = os.WriteFile(goFile, nil, 0o644)
	}()
	return func() ([]*followed, []error) {
		done.Wait()
		return outs, errs
	}
}

// TestLoad: 10 concurrent submitters × 100 small jobs on a lab of 20 sim
// boards (10 × 10 with -short) all complete, none lost or duplicated, each
// job's test ran once; meanwhile 50 WebSocket followers of a job printing
// 2000 numbered lines all get every line, in order, and the end frame.
func TestLoad(t *testing.T) {
	leaks := append(leakOptions, goleak.IgnoreCurrent())
	t.Cleanup(func() {
		loadClient.CloseIdleConnections()
		goleak.VerifyNone(t, leaks...)
	})
	jobsEach := loadJobsEach
	if testing.Short() {
		jobsEach = 10
	}
	start := time.Now()
	base := startServer(t, loadBoards)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	// The followed job first: it gets a board at once and waits for its
	// followers before it prints.
	goFile := filepath.Join(t.TempDir(), "go")
	printer, err := post(base, printingJob("printer", goFile, loadLines, 100, "0.01"))
	require.NoError(t, err)
	wait := followers(ctx, base, printer, loadFollowers, goFile, nil)

	// 10 submitters × 100 jobs, each printing a token of its own.
	tokens := map[string]string{} // job ID → token
	var mu sync.Mutex
	var subs sync.WaitGroup
	subErrs := make(chan error, loadSubmitters)
	for s := range loadSubmitters {
		subs.Go(func() {
			for i := range jobsEach {
				tok := fmt.Sprintf("tok-%d-%d", s, i)
				id, err := post(base, smallJob(fmt.Sprintf("load-%d-%d", s, i), tok))
				if err != nil {
					subErrs <- fmt.Errorf("submitter %d, job %d: %w", s, i, err)
					return
				}
				mu.Lock()
				dup, seen := tokens[id]
				tokens[id] = tok
				mu.Unlock()
				if seen {
					subErrs <- fmt.Errorf("ID %s returned for %s and %s", id, dup, tok)
					return
				}
			}
		})
	}
	subs.Wait()
	close(subErrs)
	for err := range subErrs {
		t.Error(err)
	}
	require.Len(t, tokens, loadSubmitters*jobsEach)
	t.Logf("%d jobs submitted in %s", len(tokens), time.Since(start).Round(time.Millisecond))

	outs, errs := wait()
	t.Logf("%d followers done after %s", loadFollowers, time.Since(start).Round(time.Millisecond))
	lagged := 0
	for i, o := range outs {
		if !assert.NoError(t, errs[i], "follower %d", i) {
			continue
		}
		assert.NoError(t, o.seqError, "follower %d", i)
		assert.NoError(t, checkLines(o.lines, loadLines), "follower %d", i)
		assert.Equal(t, "complete", o.end, "follower %d: the end frame", i)
		lagged += o.lagged
	}
	t.Logf("followers told they lagged (and resumed): %d times", lagged)

	waitIdle(t, base, 4*time.Minute)
	t.Logf("all jobs ended after %s", time.Since(start).Round(time.Millisecond))

	// Every ID once in the list, every job complete.
	var list []server.Summary
	require.NoError(t, getJSON(base+"/api/v1/jobs", &list))
	assert.Len(t, list, len(tokens)+1)
	listed := map[string]int{}
	for _, s := range list {
		listed[s.ID]++
		assert.Equal(t, "complete", s.Status, "job %s (%s): %s", s.ID, s.Name, s.Error)
	}
	for id := range tokens {
		assert.Equal(t, 1, listed[id], "job %s in the list", id)
	}
	assert.Equal(t, 1, listed[printer])

	// Every job's test ran once: its token is in its log exactly once,
	// and it had a single attempt.
	ids := make(chan string)
	var checks sync.WaitGroup
	var bad []string
	for range 4 {
		checks.Go(func() {
			for id := range ids {
				if msg := checkRanOnce(base, id, tokens[id]); msg != "" {
					mu.Lock()
					bad = append(bad, msg)
					mu.Unlock()
				}
			}
		})
	}
	for id := range tokens {
		ids <- id
	}
	close(ids)
	checks.Wait()
	assert.Empty(t, bad)
	t.Logf("checked after %s", time.Since(start).Round(time.Millisecond))
}

// checkRanOnce tells what is wrong with job id, whose test printed "ran
// token": "" if it ran once, on one board, to completion.
func checkRanOnce(base, id, token string) string {
	code, logs, err := call("GET", base+"/api/v1/jobs/"+id+"/logs", "")
	if err != nil || code != http.StatusOK {
		return fmt.Sprintf("job %s logs: %d %v", id, code, err)
	}
	n := 0
	for line := range bytes.Lines(logs) {
		// <time> <node> <text>
		if f := strings.SplitN(strings.TrimSuffix(string(line), "\n"), " ", 3); len(f) == 3 && f[2] == "ran "+token {
			n++
		}
	}
	if n != 1 {
		return fmt.Sprintf("job %s: %q %d times in its log", id, "ran "+token, n)
	}
	var j server.Job
	if err := getJSON(base+"/api/v1/jobs/"+id, &j); err != nil {
		return err.Error()
	}
	if j.Status != "complete" || len(j.Attempts) != 0 || len(j.Nodes) != 1 || len(j.Tests) != 1 {
		return fmt.Sprintf("job %s: %+v", id, j)
	}
	return ""
}
