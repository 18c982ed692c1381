package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"github.com/troupe-lab/troupe/internal/testenv"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/server"
)

// chromiumPath is Debian's chromium (make deps installs it).
const chromiumPath = "/usr/bin/chromium"

const browserLab = `
[[board]]
name = "sim-a"
device_type = "sim"
backend = "sim"

[[board]]
name = "sim-b"
device_type = "sim"
backend = "sim"
`

// browserJob prints its lines slowly, so that they arrive while the test
// watches the page.
const browserJob = `name = "browser-demo"
timeout = "1m"

[roles.server]
device_type = "sim"

[roles.client]
device_type = "sim"

[[action]]
type = "boot"
timeout = "20s"

[[action]]
type = "test"
name = "talk"
timeout = "30s"
run = '''
for i in 1 2 3 4 5 6 7 8; do echo "tick $i of $TROUPE_NODE"; sleep 0.5; done
troupe-sync talked
troupe-test-case talked --result pass
'''
`

// quickJob is submitted through the API while the browser shows the list.
const quickJob = `name = "quick"

[roles.solo]
device_type = "sim"

[[action]]
type = "boot"

[[action]]
type = "test"
name = "ok"
run = "troupe-test-case ok --result pass"
`

// invalidJob has an unknown key: troupe validate names file, line and key.
const invalidJob = `name = "broken"

[roles.solo]
device_type = "sim"
bogus = 1
`

// TestBrowserSubmitWatchComplete drives the web UI in a real browser:
// an invalid job shows the validation error; a valid job submitted through
// the form shows its console lines while it runs and ends complete with
// its results.
func TestBrowserSubmitWatchComplete(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Missing(t, fmt.Sprintf("the browser test needs %s: apt-get install chromium chromium-driver (make deps does): %v", chromiumPath, err))
	}
	// Registered first, so it runs last: after the browser and the server closed.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	started := time.Now()

	l, err := lab.Parse("browser-lab.toml", []byte(browserLab))
	if err != nil {
		t.Fatalf("parse lab: %v", err)
	}
	srv, err := server.New(server.Config{Lab: l, Data: t.TempDir()})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	defer func() {
		if err := srv.Close(); err != nil {
			t.Errorf("server Close: %v", err)
		}
	}()
	ts := httptest.NewServer(srv.Handler()) // 127.0.0.1
	defer ts.Close()

	ctx, exceptions := startBrowser(t)

	// The job list first, then the form.
	within(t, ctx, 10*time.Second, "open the job list and the submit form",
		chromedp.Navigate(ts.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#jobs")),
		chromedp.Click(chromedp.CSS(`nav a[data-nav="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#job-text")),
	)

	// An invalid job: the page shows the server's 400 text, verbatim.
	within(t, ctx, 5*time.Second, "submit an invalid job",
		chromedp.SetValue(chromedp.CSS("#job-text"), invalidJob),
		chromedp.Click(chromedp.CSS("#submit-job")),
	)
	shown := poll[string](t, ctx, 10*time.Second, "the validation error",
		`(() => { const e = document.getElementById('submit-error'); return e && !e.hidden && e.textContent; })()`)
	if want := validationError(t, ts.URL, invalidJob); shown != want {
		t.Errorf("page shows the error %q, the API says %q", shown, want)
	}
	if !strings.Contains(shown, "bogus") {
		t.Errorf("validation error %q does not name the unknown key", shown)
	}

	// A valid job: the form leads to the job page.
	within(t, ctx, 5*time.Second, "submit the job",
		chromedp.SetValue(chromedp.CSS("#job-text"), browserJob),
		chromedp.Click(chromedp.CSS("#submit-job")),
	)
	hash := poll[string](t, ctx, 10*time.Second, "the job page",
		`location.hash.startsWith('#/jobs/') && document.getElementById('job-status') && location.hash`)
	id := strings.TrimPrefix(hash, "#/jobs/")
	t.Logf("job %s submitted after %v", id, time.Since(started).Round(time.Millisecond))

	// Live: the first line is on the page while the job still runs and
	// before its last line was printed. Checked in one evaluation, so the
	// status is the one shown when the line appeared.
	type liveView struct {
		Status string `json:"status"`
		Lines  int    `json:"lines"`
		Last   bool   `json:"last"`
	}
	live := poll[liveView](t, ctx, 20*time.Second, "a console line while the job runs", `(() => {
		const texts = [...document.querySelectorAll('#console .line .text')].map((e) => e.textContent);
		if (!texts.some((s) => s.startsWith('tick 1 of '))) return false;
		return {status: document.getElementById('job-status').textContent, lines: texts.length,
			last: texts.some((s) => s.startsWith('tick 8 of '))};
	})()`)
	t.Logf("first line seen after %v: %+v", time.Since(started).Round(time.Millisecond), live)
	if live.Status != "running" || live.Last {
		t.Errorf("when the first line appeared the page showed status %q and the last line %v; want running and not yet", live.Status, live.Last)
	}

	// Complete, with the passing test case in the results table.
	passed := poll[string](t, ctx, 25*time.Second, "the job complete with results", `(() => {
		if (document.getElementById('job-status').textContent !== 'complete') return false;
		const rows = [...document.querySelectorAll('#tests tr.result-pass')].map((r) => r.textContent);
		return rows.length > 0 && rows.join('\n');
	})()`)
	if !strings.Contains(passed, "talked") {
		t.Errorf("passing rows %q lack the test case talked", passed)
	}
	t.Logf("complete after %v", time.Since(started).Round(time.Millisecond))

	// Every line once, in order, from both nodes.
	ticks := run[[]string](t, ctx, 5*time.Second, "the console lines", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('#console .line')].filter((l) => l.querySelector('.text').textContent.startsWith('tick '))
			.map((l) => l.dataset.node + ': ' + l.querySelector('.text').textContent)`))
	for _, node := range []string{"server-0", "client-0"} {
		var got []string
		for _, s := range ticks {
			if strings.HasPrefix(s, node+": ") {
				got = append(got, s)
			}
		}
		var want []string
		for i := 1; i <= 8; i++ {
			want = append(want, fmt.Sprintf("%s: tick %d of %s", node, i, node))
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("console lines of %s:\n%s\nwant:\n%s", node, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}

	// A node's tab shows that node's lines only.
	within(t, ctx, 5*time.Second, "open the client-0 tab",
		chromedp.Click(chromedp.CSS(`#tabs button[data-node="client-0"]`)))
	nodes := run[[]string](t, ctx, 5*time.Second, "the nodes of the visible lines", chromedp.Evaluate[[]string](
		`[...new Set([...document.querySelectorAll('#console .line')].filter((l) => !l.hidden).map((l) => l.dataset.node))]`))
	if strings.Join(nodes, ",") != "client-0" {
		t.Errorf("the client-0 tab shows lines of %v", nodes)
	}
	within(t, ctx, 5*time.Second, "back to the timeline",
		chromedp.Click(chromedp.CSS(`#tabs button[data-node=""]`)))

	if os.Getenv("TROUPE_SCREENSHOT") == "1" {
		png := run[[]byte](t, ctx, 10*time.Second, "a screenshot", chromedp.FullScreenshot(100))
		out := filepath.Join("..", "docs", "ui-job.png")
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatalf("save screenshot: %v", err)
		}
		t.Logf("screenshot in %s", out)
	}

	// The job list shows it complete, and follows a job submitted
	// elsewhere live (over /api/v1/events) until it completes.
	within(t, ctx, 5*time.Second, "open the job list", chromedp.Click(chromedp.CSS(`nav a[data-nav="jobs"]`)))
	poll[bool](t, ctx, 10*time.Second, "the job complete in the list, the list live",
		fmt.Sprintf(`(() => { const r = document.querySelector('#jobs tr[data-id=%q]');
			return !!r && r.textContent.includes('complete') && document.getElementById('live').textContent.includes('live'); })()`, id))
	other := submit(t, ts.URL, quickJob)
	poll[bool](t, ctx, 20*time.Second, "the job submitted elsewhere complete in the list",
		fmt.Sprintf(`(() => { const r = document.querySelector('#jobs tr[data-id=%q]'); return !!r && r.textContent.includes('complete'); })()`, other))
	within(t, ctx, 5*time.Second, "open the devices page", chromedp.Click(chromedp.CSS(`nav a[data-nav="devices"]`)))
	poll[bool](t, ctx, 10*time.Second, "both boards on the devices page",
		`document.querySelectorAll('#devices tr[data-name="sim-a"], #devices tr[data-name="sim-b"]').length === 2`)

	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("the page threw:\n%s", strings.Join(ex, "\n"))
	}
	t.Logf("browser test took %v", time.Since(started).Round(time.Millisecond))
}

// startBrowser starts a headless chromium with a fresh profile and opens
// a tab. It returns the tab's context and a func listing the uncaught
// exceptions of the page so far. The browser is closed at cleanup.
func startBrowser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	// A hard limit for the browser's whole life: nothing can hang past it.
	life, stop := context.WithTimeout(context.Background(), 90*time.Second)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(life, opts...)
	ctx, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		closing, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := chromedp.Cancel(closing); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("close the browser: %v", err)
		}
		cancelTab()
		cancelAlloc()
		stop()
	})

	var mu sync.Mutex
	var thrown []string
	// Listen starts the browser and opens the tab (this first call must
	// not carry a shorter timeout: the browser lives as long as its context).
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok && e.ExceptionDetails != nil {
			mu.Lock()
			defer mu.Unlock()
			text := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				text += " " + e.ExceptionDetails.Exception.Description
			}
			thrown = append(thrown, text)
		}
	}); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), thrown...)
	}
}

// within runs steps with a timeout; on failure it names what it was doing
// and shows the page.
func within(t *testing.T, ctx context.Context, d time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		t.Fatalf("%s: %v\npage:\n%s", what, err, pageText(ctx))
	}
}

// run runs one action with a timeout and returns its value.
func run[T any](t *testing.T, ctx context.Context, d time.Duration, what string, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	v, err := chromedp.Run(c, a)
	if err != nil {
		t.Fatalf("%s: %v\npage:\n%s", what, err, pageText(ctx))
	}
	return v
}

// poll waits up to d for the JavaScript expression to be truthy and
// returns its value.
func poll[T any](t *testing.T, ctx context.Context, d time.Duration, what, expr string) T {
	t.Helper()
	return run(t, ctx, d+time.Second, "wait for "+what, chromedp.Poll[T](expr,
		chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(d)))
}

// pageText is what the page shows, for failure messages.
func pageText(ctx context.Context) string {
	c, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	s, err := chromedp.Run(c, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
	if err != nil {
		return fmt.Sprintf("(cannot read the page: %v)", err)
	}
	return s
}

// submit posts a job through the API and returns its ID.
func submit(t *testing.T, base, job string) string {
	t.Helper()
	resp, err := http.Post(base+"/api/v1/jobs", "application/toml", strings.NewReader(job))
	if err != nil {
		t.Fatalf("POST a job: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		ID    string `json:"id"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode the answer to a job: %v", err)
	}
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST a job: %s %s", resp.Status, body.Error)
	}
	return body.ID
}

// validationError is the API's own answer to an invalid job.
func validationError(t *testing.T, base, job string) string {
	t.Helper()
	resp, err := http.Post(base+"/api/v1/jobs", "application/toml", strings.NewReader(job))
	if err != nil {
		t.Fatalf("POST the invalid job: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode the 400 of an invalid job: %v", err)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("POST an invalid job: %s, want 400", resp.Status)
	}
	return body.Error
}
