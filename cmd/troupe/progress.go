package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/testshell"
)

// progress is the live table of troupe run and troupe submit --follow on a
// terminal: one row per node (phase, elapsed time, test cases passed and
// failed) redrawn in place under the lines printed so far. Its methods are
// safe for concurrent use; frame renders what changed and only the caller
// of frame writes to the terminal.
type progress struct {
	now  func() time.Time
	size func() (width, height int) // of the terminal

	mu      sync.Mutex // guards the fields below
	rows    []*progressRow
	byKey   map[string]*progressRow
	above   []string // lines to print above the table at the next frame
	skipped int      // lines dropped from above since the last frame
	drawn   int      // lines of the table on the screen
	changed chan struct{}

	// show's goroutine: quit ends it, done when it has
	quit, done chan struct{}
	stopOnce   sync.Once
}

type progressRow struct {
	key, board, phase string
	start, end        time.Time // end: zero while the node runs
	passed, failed    int
}

// maxAbove bounds the lines waiting to be printed above the table: a
// terminal slower than the log loses lines (and says how many), it never
// makes troupe hold the log in memory.
const maxAbove = 2000

func newProgress(now func() time.Time, size func() (int, int)) *progress {
	return &progress{now: now, size: size, byKey: map[string]*progressRow{}, changed: make(chan struct{}, 1)}
}

// finalPhase tells whether phase is a node's final status.
func finalPhase(phase string) bool {
	return phase == report.StatusComplete || phase == report.StatusIncomplete || phase == report.StatusCanceled
}

// Phase records that node key (on board) is in phase since at: a new node
// starts its elapsed time at at, a final status stops it.
func (p *progress) Phase(key, board, phase string, at time.Time) {
	p.mu.Lock()
	r := p.rowLocked(key, at)
	if board != "" {
		r.board = board
	}
	r.phase = phase
	switch {
	case !finalPhase(phase):
		r.end = time.Time{} // a retry runs the node again
	case r.end.IsZero():
		r.end = at
	}
	p.mu.Unlock()
	p.touch()
}

// Line counts the test case results a console line of node key reports.
func (p *progress) Line(key, text string) {
	ms, _ := testshell.ParseLine(text)
	if len(ms) == 0 {
		return
	}
	p.mu.Lock()
	r := p.rowLocked(key, p.now())
	for _, m := range ms {
		switch {
		case m.Kind != testshell.TestCase:
		case m.Result == "pass":
			r.passed++
		case m.Result == "fail":
			r.failed++
		}
	}
	p.mu.Unlock()
	p.touch()
}

// Results replaces the counts of the nodes in tests by the final ones.
func (p *progress) Results(prefix string, tests []report.Test) {
	counts := map[string][2]int{}
	for _, t := range tests {
		c := counts[t.Node]
		switch t.Result {
		case report.Pass:
			c[0]++
		case report.Fail:
			c[1]++
		}
		counts[t.Node] = c
	}
	p.mu.Lock()
	for node, c := range counts {
		if r := p.byKey[prefix+node]; r != nil {
			r.passed, r.failed = c[0], c[1]
		}
	}
	p.mu.Unlock()
	p.touch()
}

// Print adds a line to print above the table.
func (p *progress) Print(line string) {
	p.mu.Lock()
	if len(p.above) >= maxAbove {
		p.above = p.above[1:]
		p.skipped++
	}
	p.above = append(p.above, line)
	p.mu.Unlock()
	p.touch()
}

func (p *progress) rowLocked(key string, at time.Time) *progressRow {
	if r := p.byKey[key]; r != nil {
		return r
	}
	r := &progressRow{key: key, start: at}
	p.byKey[key] = r
	i := sort.Search(len(p.rows), func(i int) bool { return p.rows[i].key > key })
	p.rows = append(p.rows, nil)
	copy(p.rows[i+1:], p.rows[i:])
	p.rows[i] = r
	return r
}

// touch says a frame is due (without blocking).
func (p *progress) touch() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// frame renders the next frame: back to the top of the table drawn last,
// clear, the lines printed since, the table.
func (p *progress) frame() []byte {
	width, height := p.size()
	width = max(width, 20)
	height = max(height, 5)
	now := p.now()
	var b strings.Builder
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\r\x1b[%dA\x1b[J", p.drawn)
	}
	if p.skipped > 0 {
		fmt.Fprintf(&b, "[%d lines not shown: the terminal was slower than the log]\n", p.skipped)
		p.skipped = 0
	}
	for _, l := range p.above {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	p.above = p.above[:0]
	table := p.tableLocked(now, height-2)
	for _, l := range table {
		b.WriteString(cut(l, width-1)) // a full-width line would wrap and break the count
		b.WriteByte('\n')
	}
	p.drawn = len(table)
	return []byte(b.String())
}

// tableLocked is the table: a header, a row per node (at most maxLines
// lines in all), a total.
func (p *progress) tableLocked(now time.Time, maxLines int) []string {
	if len(p.rows) == 0 {
		return nil
	}
	keyW, boardW, phaseW := len("NODE"), len("BOARD"), len("PHASE")
	for _, r := range p.rows {
		keyW = max(keyW, utf8.RuneCountInString(r.key))
		boardW = max(boardW, utf8.RuneCountInString(r.board))
		phaseW = max(phaseW, utf8.RuneCountInString(r.phase))
	}
	phaseW = min(phaseW, 30)
	row := func(key, board, phase, took, pass, fail string) string {
		return fmt.Sprintf("%-*s  %-*s  %-*s  %7s  %4s  %4s", keyW, key, boardW, board, phaseW, cut(phase, phaseW), took, pass, fail)
	}
	lines := []string{row("NODE", "BOARD", "PHASE", "TIME", "PASS", "FAIL")}
	shown := p.rows
	if len(shown)+2 > maxLines {
		shown = shown[:max(maxLines-3, 0)]
	}
	running, passed, failed := 0, 0, 0
	var start time.Time
	for _, r := range p.rows {
		if r.end.IsZero() {
			running++
		}
		passed += r.passed
		failed += r.failed
		if start.IsZero() || r.start.Before(start) {
			start = r.start
		}
	}
	for _, r := range shown {
		end := r.end
		if end.IsZero() {
			end = now
		}
		lines = append(lines, row(r.key, r.board, r.phase, elapsed(end.Sub(r.start)), fmt.Sprint(r.passed), fmt.Sprint(r.failed)))
	}
	if more := len(p.rows) - len(shown); more > 0 {
		lines = append(lines, fmt.Sprintf("… and %d more nodes", more))
	}
	nodes := "nodes"
	if len(p.rows) == 1 {
		nodes = "node"
	}
	lines = append(lines, fmt.Sprintf("%d %s, %d running, %d passed, %d failed, %s", len(p.rows), nodes, running, passed, failed, elapsed(now.Sub(start))))
	return lines
}

// elapsed is d as "9.8s" or "12m05s".
func elapsed(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", max(d, 0).Seconds())
	}
	d = d.Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

// cut shortens s to at most n runes.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:max(n-1, 0)]) + "…"
}

// show draws p on w at each change (at most every 100 ms) and every second
// (the times go on) until stop. Call it once.
func (p *progress) show(w io.Writer) {
	p.quit, p.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-p.quit:
				_, _ = w.Write(p.frame())
				return
			case <-p.changed:
			case <-tick.C:
			}
			_, _ = w.Write(p.frame())
			pause := time.NewTimer(100 * time.Millisecond)
			select {
			case <-p.quit:
				pause.Stop()
				_, _ = w.Write(p.frame())
				return
			case <-pause.C:
			}
		}
	}()
}

// stop ends show: it draws the last frame and returns once it is written
// (or, on a terminal that takes no output, after 10 s). It is idempotent.
func (p *progress) stop() {
	p.stopOnce.Do(func() {
		if p.quit == nil {
			return
		}
		close(p.quit)
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
		}
	})
}

// terminalSize returns the size of w if it is a terminal troupe can draw on
// (not TERM=dumb), else nil.
func terminalSize(w io.Writer) func() (int, int) {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return nil
	}
	fd := int(f.Fd())
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
		return nil
	}
	return func() (int, int) {
		ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
		if err != nil || ws.Col == 0 || ws.Row == 0 {
			return 80, 24
		}
		return int(ws.Col), int(ws.Row)
	}
}
