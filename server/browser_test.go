package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
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

// talkJob is a job named name for a server and a client sim board: boot,
// then the test "talk", whose TOML multi-line string rest goes on (the
// script, the string's end, then any more actions).
func talkJob(name, rest string) string {
	return `name = "` + name + `"
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
` + rest
}

// browserJob prints its lines slowly, so that they arrive while the test
// watches the page.
var browserJob = talkJob("browser-demo", `for i in 1 2 3 4 5 6 7 8; do echo "tick $i of $TROUPE_NODE"; sleep 0.5; done
troupe-sync talked
troupe-test-case talked --result pass
'''
`)

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

// browserServer is the fixture of the browser tests: it fails or skips
// (testenv.Missing) without chromium, serves browserLab on 127.0.0.1 and
// returns the base URL; at the end it closes the server and checks that no
// goroutine leaked.
func browserServer(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Missing(t, fmt.Sprintf("the browser test needs %s: apt-get install chromium chromium-driver (make deps does): %v", chromiumPath, err))
	}
	// Registered first, so it runs last: after the browser and the server closed.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	l, err := lab.Parse("browser-lab.toml", []byte(browserLab))
	if err != nil {
		t.Fatalf("parse lab: %v", err)
	}
	srv, err := server.New(server.Config{Lab: l, Data: t.TempDir()})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("server Close: %v", err)
		}
	})
	ts := httptest.NewServer(srv.Handler()) // 127.0.0.1
	t.Cleanup(ts.Close)
	return ts.URL
}

// TestBrowserSubmitWatchComplete drives the web UI in a real browser:
// an invalid job shows the validation error; a valid job submitted through
// the form shows its console lines while it runs and ends complete with
// its results.
func TestBrowserSubmitWatchComplete(t *testing.T) {
	base := browserServer(t)
	started := time.Now()
	ctx, exceptions := startBrowser(t)

	// The job list first, then the form.
	within(t, ctx, 10*time.Second, "open the job list and the submit form",
		chromedp.Navigate(base+"/"),
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
	if want := validationError(t, base, invalidJob); shown != want {
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
		Marker string `json:"marker"`
		Follow bool   `json:"follow"`
	}
	live := poll[liveView](t, ctx, 20*time.Second, "a console line while the job runs", `(() => {
		const texts = [...document.querySelectorAll('#console .line .text')].map((e) => e.textContent);
		if (!texts.some((s) => s.startsWith('tick 1 of '))) return false;
		const box = document.getElementById('console');
		box.scrollTop = 0; // scrolled up while live: the follow button shows
		box.dispatchEvent(new Event('scroll'));
		return {status: document.getElementById('job-status').textContent, lines: texts.length,
			last: texts.some((s) => s.startsWith('tick 8 of ')),
			marker: document.getElementById('job-live').className + ' ' + document.getElementById('job-live').textContent,
			follow: !document.getElementById('follow').hidden};
	})()`)
	t.Logf("first line seen after %v: %+v", time.Since(started).Round(time.Millisecond), live)
	if live.Status != "running" || live.Last {
		t.Errorf("when the first line appeared the page showed status %q and the last line %v; want running and not yet", live.Status, live.Last)
	}
	if live.Marker != "marker live ● live" || !live.Follow {
		t.Errorf("a running job shows the marker %q and the follow button %v; want live, and follow when scrolled up", live.Marker, live.Follow)
	}
	within(t, ctx, 5*time.Second, "follow the end again", chromedp.Click(chromedp.CSS("#follow")))
	// The running action's section says so, while the job runs.
	if st := poll[string](t, ctx, 3*time.Second, "the running section", `(() => {
		const b = document.querySelector(`+"`"+`#console .sec[data-node="client-0"][data-phase="test 'talk'"] .badge`+"`"+`);
		return !!b && !b.hidden && b.textContent === 'running' && document.getElementById('job-status').textContent; })()`); st != "running" {
		t.Errorf("the section of the running action showed running while the job was %q", st)
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
	type section struct{ Node, Phase, Badge string }
	secs := poll[[]section](t, ctx, 5*time.Second, "the sections once ended", `(() => {
		const s = [...document.querySelectorAll('#console .sec')].map((s) => ({Node: s.dataset.node, Phase: s.dataset.phase,
			Badge: s.querySelector('.badge').textContent}));
		return s.length > 0 && s.every((x) => x.Badge === 'pass') && s; })()`)
	var got []string
	for _, s := range secs {
		got = append(got, s.Node+" "+s.Phase)
	}
	slices.Sort(got)
	if want := []string{"client-0 boot", "client-0 test 'talk'", "server-0 boot", "server-0 test 'talk'"}; !slices.Equal(got, want) {
		t.Errorf("the sections followed live are %q, want %q", got, want)
	}
	if ended := poll[string](t, ctx, 5*time.Second, "the ended marker", `(() => { const m = document.getElementById('job-live');
		return m.classList.contains('ended') && document.getElementById('follow').hidden && m.textContent; })()`); ended != "■ ended" {
		t.Errorf("an ended job shows the marker %q", ended)
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

	// The job list shows it complete, and follows a job submitted
	// elsewhere live (over /api/v1/events) until it completes.
	within(t, ctx, 5*time.Second, "open the job list", chromedp.Click(chromedp.CSS(`nav a[data-nav="jobs"]`)))
	poll[bool](t, ctx, 10*time.Second, "the job complete in the list, the list live",
		fmt.Sprintf(`(() => { const r = document.querySelector('#jobs tr[data-id=%q]');
			return !!r && r.textContent.includes('complete') && document.getElementById('live').textContent.includes('live'); })()`, id))
	other := submit(t, base, quickJob)
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

// logViewJob has what the log view tidies: blank lines, a MultiNode
// call, result markers (one failing), three test actions (the last one
// fails), and a line too long for a phone. A sim board echoes nothing the
// harness types, so the set-up line a real board's console echoes (before
// Init's stty -echo) is printed by the script, as it would appear there.
var logViewJob = talkJob("log-view", `for i in 1 2 3 4 5 6 7 8; do echo "tick $i of $TROUPE_NODE"; done
printf '%s\n' "stty -echo 2>/dev/null; PS1=''; printf '<TROUPE_%s %s %s>\n' END 0a1b2c3d-1 \"\$?\""
echo
echo "unbroken-$(printf 'x%.0s' $(seq 1 300))"
troupe-sync talked
troupe-test-case talked --result pass
troupe-test-case checked --result fail
'''

[[action]]
type = "test"
name = "more"
timeout = "30s"
run = '''
echo "more from $TROUPE_NODE"
troupe-test-case again --result pass
'''

[[action]]
type = "test"
name = "fails"
timeout = "30s"
run = '''
echo "about to fail"
exit 3
'''
`)

// TestBrowserLogView checks the job page's log view on an ended job:
// plumbing hidden until "raw", sections per action that collapse,
// permalinks to lines, search, results linked to their lines with totals,
// per-node downloads, an ended marker without "follow", a phone-width
// layout without sideways scrolling, and dark mode.
func TestBrowserLogView(t *testing.T) {
	base := browserServer(t)
	id := submit(t, base, logViewJob)
	job := awaitEnded(t, base, id, 40*time.Second)
	if job.Status != "complete" {
		t.Fatalf("job %s is %s (%s), want complete", id, job.Status, job.Error)
	}
	// What the page must show, from the API: line n of the log is seq n.
	logText := get(t, base+"/api/v1/jobs/"+id+"/logs")
	log := strings.Split(strings.TrimSuffix(logText, "\n"), "\n")
	seqOf := func(node, contains string) int {
		t.Helper()
		for i, line := range log {
			if parts := strings.SplitN(line, " ", 3); len(parts) == 3 && parts[1] == node && strings.Contains(parts[2], contains) {
				return i + 1
			}
		}
		t.Fatalf("no line of %s with %q in the log:\n%s", node, contains, logText)
		return 0
	}

	ctx, exceptions := startBrowser(t)
	page := base + "/#/jobs/" + id
	within(t, ctx, 10*time.Second, "open the job page", chromedp.Navigate(page))
	poll[bool](t, ctx, 10*time.Second, "the ended job with its sections and results", `(() =>
		document.getElementById('job-live').textContent.includes('ended') &&
		document.querySelectorAll('#console .sec').length === 8 &&
		!!document.querySelector('#tests a.case-line[href*="#L"]'))()`)

	// Live and ended differ; no follow button on an ended job, even when
	// the console is scrolled up.
	type marker struct {
		Job, Stream, JobClass string
		Follow                bool
	}
	m := run[marker](t, ctx, 5*time.Second, "the markers", chromedp.Evaluate[marker](`(() => {
		const box = document.getElementById('console');
		box.scrollTop = 0;
		box.dispatchEvent(new Event('scroll'));
		return {Job: document.getElementById('job-live').textContent, JobClass: document.getElementById('job-live').className,
			Stream: document.getElementById('stream-state').textContent, Follow: !document.getElementById('follow').hidden};
	})()`))
	if !strings.Contains(m.Job, "ended") || !strings.Contains(m.JobClass, "ended") || !strings.Contains(m.Stream, "ended") || m.Follow {
		t.Errorf("an ended job shows the markers %+v; want ended, and no follow button", m)
	}

	// Plumbing: hidden by default, shown with "raw".
	const plumbing = `(() => {
		const shown = [...document.querySelectorAll('#console .line')].filter((l) => !l.hidden && l.offsetParent !== null)
			.map((l) => l.querySelector('.text').textContent);
		return {
			Setup: shown.filter((s) => s.includes('stty -echo') || s.includes("printf '<TROUPE_%s")).length,
			End: shown.some((s) => s.includes('<TROUPE_END ')),
			Signal: shown.some((s) => s.includes('<LAVA_SIGNAL_')),
			MultiNode: shown.some((s) => s.includes('<LAVA_MULTI_NODE>')),
			Blank: shown.some((s) => s.trim() === ''),
			Said: shown.filter((s) => s === 'test case talked: pass').length,
			Lines: shown.length,
		};
	})()`
	type plumbView struct {
		End, Signal, MultiNode, Blank bool
		Setup, Said, Lines            int
	}
	tidy := run[plumbView](t, ctx, 5*time.Second, "the tidy log", chromedp.Evaluate[plumbView](plumbing))
	if tidy.Setup != 0 || tidy.End || tidy.Signal || tidy.MultiNode || tidy.Blank {
		t.Errorf("plumbing shown by default: %+v", tidy)
	}
	if tidy.Said != 2 {
		t.Errorf("the result marker of talked is shown as %d readable lines, want one per node", tidy.Said)
	}
	within(t, ctx, 5*time.Second, "turn raw on", chromedp.Click(chromedp.CSS("#raw")))
	rawView := run[plumbView](t, ctx, 5*time.Second, "the raw log", chromedp.Evaluate[plumbView](plumbing))
	// Set-up lines: the one each node's script printed; no line the
	// harness typed is echoed by a sim board.
	if rawView.Setup != 2 || !rawView.End || !rawView.Signal || !rawView.MultiNode || !rawView.Blank || rawView.Lines != len(log) {
		t.Errorf("raw shows %+v; want every kind of plumbing, 2 set-up lines and all %d lines", rawView, len(log))
	}
	within(t, ctx, 5*time.Second, "turn raw off", chromedp.Click(chromedp.CSS("#raw")))
	if again := run[plumbView](t, ctx, 5*time.Second, "the tidy log again", chromedp.Evaluate[plumbView](plumbing)); again != tidy {
		t.Errorf("raw off again shows %+v, first %+v", again, tidy)
	}

	// The raw log and a node's log download as the API serves them.
	within(t, ctx, 5*time.Second, "watch downloads", chromedp.Evaluate[chromedp.Void](`(() => {
		window.saved = [];
		const create = URL.createObjectURL;
		URL.createObjectURL = (b) => { b.text().then((s) => window.saved.push(s)); return create(b); };
	})()`))
	for _, c := range []struct{ button, url string }{
		{"#download-log", "/logs"},
		{`#downloads button[data-log="client-0"]`, "/logs?node=client-0"},
	} {
		within(t, ctx, 5*time.Second, "download "+c.url, chromedp.Evaluate[chromedp.Void](`window.saved = []`), chromedp.Click(chromedp.CSS(c.button)))
		got := poll[string](t, ctx, 5*time.Second, "the download of "+c.url, `window.saved.length > 0 && window.saved[0]`)
		if want := get(t, base+"/api/v1/jobs/"+id+c.url); got != want {
			t.Errorf("%s saves %d bytes, the API's %s has %d", c.button, len(got), c.url, len(want))
		}
	}

	// Sections: one per action of each node, with a duration and a badge;
	// one collapses and opens again.
	type section struct {
		Node, Phase, Dur, Badge string
	}
	secs := run[[]section](t, ctx, 5*time.Second, "the sections", chromedp.Evaluate[[]section](
		`[...document.querySelectorAll('#console .sec')].map((s) => ({Node: s.dataset.node, Phase: s.dataset.phase,
			Dur: s.querySelector('.dur').textContent, Badge: s.querySelector('.badge').hidden ? '' : s.querySelector('.badge').textContent}))`))
	var phases []string
	for _, s := range secs {
		if s.Node == "client-0" {
			phases = append(phases, s.Phase)
		}
		if !regexp.MustCompile(`^\d+(\.\d)? (ms|s)$|^\d+ m \d\d s$`).MatchString(s.Dur) {
			t.Errorf("section %s %s has the duration %q", s.Node, s.Phase, s.Dur)
		}
		want := "pass"
		if s.Phase == "test 'fails'" {
			want = "fail"
		}
		if s.Badge != want {
			t.Errorf("section %s %s has the badge %q, want %s", s.Node, s.Phase, s.Badge, want)
		}
	}
	if strings.Join(phases, ",") != "boot,test 'talk',test 'more',test 'fails'" {
		t.Errorf("client-0 has the sections %q", phases)
	}
	const talk = `#console .sec[data-node="client-0"][data-phase="test 'talk'"]`
	const ticksShown = `[...document.querySelectorAll('#console .line[data-node="client-0"]')].filter((l) => !l.hidden && l.textContent.includes('tick ')).length`
	if n := run[int](t, ctx, 5*time.Second, "the ticks", chromedp.Evaluate[int](ticksShown)); n != 8 {
		t.Fatalf("%d tick lines of client-0 shown, want 8", n)
	}
	within(t, ctx, 5*time.Second, "collapse test 'talk' of client-0", chromedp.Click(chromedp.CSS(talk)))
	if n := run[int](t, ctx, 5*time.Second, "the ticks", chromedp.Evaluate[int](ticksShown)); n != 0 {
		t.Errorf("%d tick lines of client-0 shown with its section collapsed, want 0", n)
	}
	if n := run[int](t, ctx, 5*time.Second, "the other node's ticks", chromedp.Evaluate[int](strings.ReplaceAll(ticksShown, "client-0", "server-0"))); n != 8 {
		t.Errorf("%d tick lines of server-0 shown with client-0's section collapsed, want 8", n)
	}
	within(t, ctx, 5*time.Second, "open test 'talk' of client-0 again", chromedp.Click(chromedp.CSS(talk)))
	if n := run[int](t, ctx, 5*time.Second, "the ticks", chromedp.Evaluate[int](ticksShown)); n != 8 {
		t.Errorf("%d tick lines of client-0 shown with its section open again, want 8", n)
	}

	// Search: on the timeline it finds both nodes' ticks, counts them, and
	// steps through them; on a node's tab only that node's.
	within(t, ctx, 5*time.Second, "search for tick", chromedp.Evaluate[chromedp.Void](
		`(() => { const s = document.getElementById('search'); s.value = 'TICK'; s.dispatchEvent(new Event('input')); })()`))
	type found struct {
		Count   string
		Visible []string
		Current string
	}
	const searchView = `(() => ({Count: document.getElementById('search-count').textContent,
		Visible: [...document.querySelectorAll('#console .line')].filter((l) => !l.hidden).map((l) => l.querySelector('.text').textContent),
		Current: (document.querySelector('#console .line.current .text') || {}).textContent || ''}))()`
	f := poll[found](t, ctx, 5*time.Second, "the matches", `(() => { const v = `+searchView+`; return v.Count.includes(' of ') && v; })()`)
	if f.Count != "1 of 16" || len(f.Visible) != 16 || f.Current != "tick 1 of server-0" && f.Current != "tick 1 of client-0" {
		t.Errorf("searching TICK on the timeline shows %q, current %q, lines %q; want 1 of 16", f.Count, f.Current, f.Visible)
	}
	for _, s := range f.Visible {
		if !strings.Contains(s, "tick") {
			t.Errorf("searching TICK shows the line %q", s)
		}
	}
	first := f.Current
	within(t, ctx, 5*time.Second, "next match", chromedp.Click(chromedp.CSS("#search-next")))
	f = run[found](t, ctx, 5*time.Second, "the next match", chromedp.Evaluate[found](searchView))
	if f.Count != "2 of 16" || f.Current == first {
		t.Errorf("next: %q, current %q (first %q)", f.Count, f.Current, first)
	}
	within(t, ctx, 5*time.Second, "previous match twice", chromedp.Click(chromedp.CSS("#search-prev")), chromedp.Click(chromedp.CSS("#search-prev")))
	if f = run[found](t, ctx, 5*time.Second, "the previous match", chromedp.Evaluate[found](searchView)); f.Count != "16 of 16" {
		t.Errorf("previous from the first match: %q, want 16 of 16 (it wraps)", f.Count)
	}
	within(t, ctx, 5*time.Second, "open the server-0 tab", chromedp.Click(chromedp.CSS(`#tabs button[data-node="server-0"]`)))
	f = run[found](t, ctx, 5*time.Second, "the matches on server-0", chromedp.Evaluate[found](searchView))
	if f.Count != "8 matches" || len(f.Visible) != 8 {
		t.Errorf("searching TICK on server-0's tab: %q, %d lines; want 8", f.Count, len(f.Visible))
	}
	within(t, ctx, 5*time.Second, "clear the search, back to the timeline",
		chromedp.Evaluate[chromedp.Void](`(() => { const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input')); })()`),
		chromedp.Click(chromedp.CSS(`#tabs button[data-node=""]`)))
	poll[bool](t, ctx, 5*time.Second, "the search cleared", `document.getElementById('search-count').textContent === ''`)

	// A permalink opens the line's node tab and scrolls the line into
	// view, also from a fresh page load.
	type opened struct {
		Tab                 string
		Shown, Target, Seen bool
		Text                string
	}
	lineView := func(seq int) string {
		return fmt.Sprintf(`(() => {
			const l = document.getElementById('L%d');
			if (!l) return false;
			const box = document.getElementById('console').getBoundingClientRect(), r = l.getBoundingClientRect();
			return {Tab: document.querySelector('#tabs button[aria-selected="true"]').dataset.node, Shown: !l.hidden,
				Target: l.classList.contains('target'), Text: l.querySelector('.text').textContent,
				Seen: r.top >= box.top && r.bottom <= box.bottom && r.top >= 0 && r.bottom <= window.innerHeight};
		})()`, seq)
	}
	tick5 := seqOf("client-0", "tick 5 of client-0")
	within(t, ctx, 10*time.Second, "open a permalink", chromedp.Navigate(fmt.Sprintf("%s/?fresh#/jobs/%s#L%d", base, id, tick5)))
	o := poll[opened](t, ctx, 10*time.Second, "the line of the permalink", `(() => { const v = `+lineView(tick5)+`; return v && v.Target && v; })()`)
	if o.Tab != "client-0" || !o.Shown || !o.Seen || o.Text != "tick 5 of client-0" {
		t.Errorf("permalink #L%d shows %+v; want client-0's tab with the line in view", tick5, o)
	}
	// A permalink to plumbing turns raw on: an end marker on a line of its
	// own (the first one follows the login's prompt, which is shown).
	end := 0
	for i, line := range log {
		if parts := strings.SplitN(line, " ", 3); len(parts) == 3 && parts[1] == "server-0" && strings.HasPrefix(parts[2], "<TROUPE_END ") {
			end = i + 1
			break
		}
	}
	if end == 0 {
		t.Fatalf("no line of server-0 is an end marker alone:\n%s", logText)
	}
	within(t, ctx, 5*time.Second, "follow a permalink on the page", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = '#/jobs/%s#L%d'`, id, end)))
	o = poll[opened](t, ctx, 5*time.Second, "the plumbing line", `(() => { const v = `+lineView(end)+`; return v && v.Target && v; })()`)
	if o.Tab != "server-0" || !o.Shown || !o.Seen || !strings.Contains(o.Text, "<TROUPE_END ") {
		t.Errorf("permalink #L%d to plumbing shows %+v", end, o)
	}
	within(t, ctx, 5*time.Second, "raw off, back to the timeline", chromedp.Click(chromedp.CSS("#raw")), chromedp.Click(chromedp.CSS(`#tabs button[data-node=""]`)))

	// Results: totals as the API counts them; each case links to the line
	// that recorded it.
	var pass, fail int
	for _, tc := range job.Tests {
		switch tc.Result {
		case "pass":
			pass++
		case "fail":
			fail++
		}
	}
	totals := run[[]string](t, ctx, 5*time.Second, "the totals", chromedp.Evaluate[[]string](
		`[document.getElementById('total-pass').textContent, document.getElementById('total-fail').textContent]`))
	if want := []string{fmt.Sprintf("%d passed", pass), fmt.Sprintf("%d failed", fail)}; strings.Join(totals, ",") != strings.Join(want, ",") {
		t.Errorf("totals %q, want %q", totals, want)
	}
	// A node's lines go to sections by time to below a ms (two frames in
	// one ms, as often on a fast host, are told apart).
	order := run[[]bool](t, ctx, 5*time.Second, "frame times below a ms", chromedp.Evaluate[[]bool](
		`[frameTime('2026-12-01T08:00:00.123456Z') < frameTime('2026-12-01T08:00:00.123457Z'),
		  frameTime('2026-12-01T08:00:00.123499Z') < frameTime('2026-12-01T08:00:00.1235Z'),
		  frameTime('2026-12-01T08:00:00.123Z') === Date.parse('2026-12-01T08:00:00.123Z'),
		  frameTime('2026-12-01T08:00:00Z') === Date.parse('2026-12-01T08:00:00Z')]`))
	if !slices.Equal(order, []bool{true, true, true, true}) {
		t.Errorf("frameTime's order and values: %v", order)
	}
	type link struct{ Row, Href string }
	links := run[[]link](t, ctx, 5*time.Second, "the result links", chromedp.Evaluate[[]link](
		`[...document.querySelectorAll('#tests tr')].map((r) => ({Row: [...r.cells].slice(0, 4).map((c) => c.textContent).join('|'),
			Href: (r.querySelector('a.case-line') || {}).hash || ''}))`))
	wantLinks := map[string]string{
		"client-0|talk|talked|pass":  fmt.Sprintf("#L%d", seqOf("client-0", "TEST_CASE_ID=talked ")),
		"client-0|talk|checked|fail": fmt.Sprintf("#L%d", seqOf("client-0", "TEST_CASE_ID=checked ")),
		"server-0|more|again|pass":   fmt.Sprintf("#L%d", seqOf("server-0", "TEST_CASE_ID=again ")),
		"server-0|troupe|more|pass":  fmt.Sprintf("#L%d", seqOf("server-0", "more from server-0")),
	}
	for row, want := range wantLinks {
		var got string
		for _, l := range links {
			if l.Row == row {
				got = l.Href
			}
		}
		if !strings.HasSuffix(got, want) {
			t.Errorf("the result %s links to %q, want …%s", row, got, want)
		}
	}
	checked := seqOf("client-0", "TEST_CASE_ID=checked ")
	within(t, ctx, 5*time.Second, "click a result's line link", chromedp.Click(chromedp.CSS(`#tests tr.result-fail a.case-line`)))
	o = poll[opened](t, ctx, 5*time.Second, "the result's line", `(() => { const v = `+lineView(checked)+`; return v && v.Target && v; })()`)
	if o.Tab != "client-0" || !o.Shown || !o.Seen || o.Text != "test case checked: fail" {
		t.Errorf("the failing result's link shows %+v", o)
	}

	if os.Getenv("TROUPE_SCREENSHOT") == "1" {
		within(t, ctx, 5*time.Second, "client-0's tab, its boot collapsed", chromedp.Click(chromedp.CSS(`#tabs button[data-node="client-0"]`)),
			chromedp.Click(chromedp.CSS(`#console .sec[data-node="client-0"][data-phase="boot"]`)),
			chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0); document.getElementById('console').scrollTop = 0`))
		screenshot(t, ctx, "ui-job.png")
	}

	// A phone: 390 px wide, nothing scrolls sideways, the log text keeps
	// a usable width.
	within(t, ctx, 5*time.Second, "a phone-sized window", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	type phone struct {
		Scroll, Inner int
		Text          float64
	}
	p := poll[phone](t, ctx, 5*time.Second, "the phone layout", `(() => window.innerWidth === 390 && ({Scroll: document.scrollingElement.scrollWidth,
		Inner: window.innerWidth, Text: document.querySelector('#console .line:not([hidden]) .text').getBoundingClientRect().width}))()`)
	if p.Scroll > 390 {
		t.Errorf("at 390 px the page is %d px wide: it scrolls sideways", p.Scroll)
	}
	if p.Text < 220 {
		t.Errorf("at 390 px the log's text column is %.0f px wide", p.Text)
	}
	if os.Getenv("TROUPE_SCREENSHOT") == "1" {
		screenshot(t, ctx, "ui-job-phone.png")
	}
	within(t, ctx, 5*time.Second, "the job list on the phone", chromedp.Click(chromedp.CSS(`nav a[data-nav="jobs"]`)))
	if w := poll[int](t, ctx, 5*time.Second, "the job list", `!!document.querySelector('#jobs tr[data-id]') && document.scrollingElement.scrollWidth`); w > 390 {
		t.Errorf("at 390 px the job list is %d px wide: it scrolls sideways", w)
	}
	within(t, ctx, 5*time.Second, "a desktop window", chromedp.EmulateViewport(1280, 1000))

	// Dark mode follows prefers-color-scheme.
	background := `getComputedStyle(document.body).backgroundColor`
	light := run[string](t, ctx, 5*time.Second, "the light background", chromedp.Evaluate[string](background))
	within(t, ctx, 5*time.Second, "prefer dark", colorScheme("dark"))
	dark := run[string](t, ctx, 5*time.Second, "the dark background", chromedp.Evaluate[string](background))
	if dark == light || dark != "rgb(15, 18, 22)" {
		t.Errorf("dark mode: background %s, light %s", dark, light)
	}
	within(t, ctx, 5*time.Second, "prefer light", colorScheme("light"))

	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("the page threw:\n%s", strings.Join(ex, "\n"))
	}
}

// colorScheme emulates the browser's prefers-color-scheme.
func colorScheme(v string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: v}},
		})
		return err
	})
}

// screenshot saves the whole page as docs/name.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := run[[]byte](t, ctx, 10*time.Second, "a screenshot", chromedp.FullScreenshot(100))
	out := filepath.Join("..", "docs", name)
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatalf("save screenshot: %v", err)
	}
	t.Logf("screenshot in %s", out)
}

// get fetches a text resource of the API.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}

// awaitEnded polls the API until job id ended.
func awaitEnded(t *testing.T, base, id string, d time.Duration) server.Job {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var j server.Job
		if err := json.Unmarshal([]byte(get(t, base+"/api/v1/jobs/"+id)), &j); err != nil {
			t.Fatalf("decode job %s: %v", id, err)
		}
		switch j.Status {
		case "complete", "incomplete", "canceled":
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is still %s after %v", id, j.Status, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
