// Package logbook records the live log of a troupe job: the raw console
// bytes of every node, each in its own file, and a merged, ordered stream of
// console lines (group.log) that subscribers can follow live.
package logbook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Retain is how many of the latest entries a Book keeps in memory for
// Subscribe to replay.
const Retain = 10000

// GroupFile is the name of the merged log inside the logs directory.
const GroupFile = "group.log"

// maxPending bounds the bytes of group.log lines logged but not yet
// written: past it, Line waits (at most pendingWait) for the writer.
const maxPending = 4 << 20

// pendingWait bounds one wait of Line for the group log's writer; past it
// the line is queued all the same (nothing is lost).
const pendingWait = 10 * time.Second

// closeWait bounds how long Close waits for the group log's writer.
const closeWait = 30 * time.Second

// DefaultLimit is how many bytes of one node's console a Book keeps, in its
// raw file and of its lines in the merged log, unless SetLimit says
// otherwise. A test that prints without end costs the server a bounded
// amount of disk.
const DefaultLimit = 16 << 20

// Dropped is the text of the one line that marks where a node's log was
// cut at the limit.
func Dropped(limit int64) string {
	return fmt.Sprintf("[troupe] this node's log reached its limit of %d bytes: the rest of its output is dropped", limit)
}

// Entry is one line of the merged log.
type Entry struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Node string    `json:"node"`
	Text string    `json:"text"`
}

// Book is the log of one job, written under <dir>/logs/. It is safe for
// concurrent use.
//
// group.log is written outside the book's lock: Line queues its line
// (in Seq order, under the lock) and a writer goroutine, started when
// lines are queued and ending when none are left, writes the queue in
// batches. Entries not yet in the file stay retained for Subscribe.
type Book struct {
	logs string
	now  func() time.Time
	// group is written by one writer at a time (see writeGroup) and
	// closed by Close or by the last writer, never under mu.
	group io.WriteCloser
	// maxPending is the queue's bound (the constant; tests lower it).
	maxPending int

	mu       sync.Mutex       // guards the fields below
	limit    int64            // bytes of console per node
	logged   map[string]int64 // node → bytes of its lines so far
	closed   bool
	seq      uint64
	last     time.Time
	writeErr error
	entries  []Entry // the latest entries; only the last Retain (and those not yet written) are used
	subs     map[*subscriber]struct{}

	pending  []byte        // group.log lines queued for the writer, in Seq order
	spare    []byte        // the writer's last batch, reused for the next queue
	written  uint64        // Seq of the last line the writer has written (or failed to)
	writing  bool          // a writer goroutine runs
	idle     chan struct{} // closed when the running writer ends
	drained  chan struct{} // closed (and replaced) each time the writer takes the queue
	closeErr error         // from closing group, by the last writer

	masks *masker // secrets masked in lines and raw logs; nil: none

	rawMu     sync.Mutex // guards raws, rawClosed and rawLimit
	rawClosed bool
	rawLimit  int64
	raws      map[string]*rawWriter
}

type subscriber struct {
	ch chan Entry
}

// New creates dir/logs/ and opens dir/logs/group.log for appending. A nil
// now uses time.Now.
func New(dir string, now func() time.Time) (*Book, error) {
	if now == nil {
		now = time.Now
	}
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, fmt.Errorf("logbook: create logs dir: %w", err)
	}
	group, err := os.OpenFile(filepath.Join(logs, GroupFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("logbook: open group log: %w", err)
	}
	return &Book{
		logs:       logs,
		now:        now,
		limit:      DefaultLimit,
		logged:     map[string]int64{},
		group:      group,
		subs:       map[*subscriber]struct{}{},
		drained:    make(chan struct{}),
		maxPending: maxPending,
		rawLimit:   DefaultLimit,
		raws:       map[string]*rawWriter{},
	}, nil
}

// Mask makes the book write "[secret]" for every occurrence of each of
// values (a job's secrets) in the lines and raw console logs of every
// node. Call it before the first Line or Raw.
func (b *Book) Mask(values []string) {
	var vs [][]byte
	for _, v := range values {
		if v != "" {
			vs = append(vs, []byte(v))
		}
	}
	if len(vs) == 0 {
		return
	}
	// The longest first: a secret that begins another masks it whole.
	slices.SortStableFunc(vs, func(a, b []byte) int { return len(b) - len(a) })
	b.mu.Lock()
	b.masks = &masker{values: vs}
	for _, v := range vs {
		b.masks.longest = max(b.masks.longest, len(v))
	}
	b.mu.Unlock()
}

// Masked is what a masked secret is written as.
const Masked = "[secret]"

// masker replaces secrets.
type masker struct {
	values  [][]byte
	longest int
}

// all masks every secret in p.
func (m *masker) all(p []byte) []byte {
	out, rest := m.scan(p, len(p))
	return append(out, rest...)
}

// stream masks p, written in pieces: it returns what can be written and
// the tail that a secret might continue in the next piece.
func (m *masker) stream(p []byte) (out, held []byte) {
	out, held = m.scan(p, len(p)-(m.longest-1))
	return out, bytes.Clone(held)
}

// scan masks p up to offset end (a secret starting before it lies wholly
// in p) and returns the masked part and the rest of p.
func (m *masker) scan(p []byte, end int) (out, rest []byte) {
	i := 0
next:
	for i < end {
		for _, v := range m.values {
			if bytes.HasPrefix(p[i:], v) {
				out = append(out, Masked...)
				i += len(v)
				continue next
			}
		}
		out = append(out, p[i])
		i++
	}
	return out, p[min(i, len(p)):]
}

// SetLimit sets how many bytes of each node's console the book keeps (in
// the node's raw file, and of its lines in the merged log); n <= 0
// keeps DefaultLimit. Past it, one Dropped line is logged and the rest is
// dropped; writers still succeed, so the job goes on. Call it before the
// first Line or Raw.
func (b *Book) SetLimit(n int64) {
	if n <= 0 {
		n = DefaultLimit
	}
	b.mu.Lock()
	b.limit = n
	b.mu.Unlock()
	b.rawMu.Lock()
	b.rawLimit = n
	b.rawMu.Unlock()
}

// Line appends one console line of node to the merged log and delivers it
// to subscribers. Control characters other than tab in node and text are
// replaced by visible escapes (e.g. "\x1b"), so an entry is always exactly
// one line. Seq starts at 1; Seq and Time are assigned under one lock, so
// entries in Seq order are also in Time order (Time never goes backwards).
// The line reaches group.log in Seq order shortly after, written by the
// book's own writer: at the latest when Close returns. After Close, Line
// does nothing and returns the zero Entry.
func (b *Book) Line(node, text string) Entry { return b.LineAt(node, text, time.Time{}) }

// LineAt is Line with the time the line was read (a worker's board), zero:
// now. Time still never goes backwards in the book: an earlier t is logged
// at the latest time logged.
func (b *Book) LineAt(node, text string, at time.Time) Entry {
	if b.masks != nil {
		text = string(b.masks.all([]byte(text)))
	}
	node, text = Escape(node), Escape(text)

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return Entry{}
	}
	used := b.logged[node]
	if used > b.limit {
		b.mu.Unlock()
		return Entry{} // cut: the Dropped line is logged
	}
	t := at.UTC()
	if at.IsZero() {
		t = b.now().UTC()
	}
	if t.Before(b.last) {
		t = b.last
	}
	n := len(b.pending)
	b.pending = appendLine(b.pending, t, node, text)
	used += int64(len(b.pending) - n)
	if used > b.limit {
		text = Dropped(b.limit)
		b.pending = appendLine(b.pending[:n], t, node, text)
	}
	b.logged[node] = used
	b.last = t
	b.seq++
	e := Entry{Seq: b.seq, Time: t, Node: node, Text: text}

	b.retainLocked(e)

	for s := range b.subs {
		select {
		case s.ch <- e:
		default: // full: drop the subscriber rather than block.
			b.dropLocked(s)
		}
	}

	start := !b.writing
	if start {
		b.writing = true
		b.idle = make(chan struct{})
	}
	var drained <-chan struct{}
	if len(b.pending) > b.maxPending {
		drained = b.drained
	}
	b.mu.Unlock()

	if start {
		go b.writeGroup()
	}
	if drained != nil {
		// The writer is behind: wait for it to take the queue, so that a
		// stuck disk bounds the memory lines queue in.
		t := time.NewTimer(pendingWait)
		defer t.Stop()
		select {
		case <-drained:
		case <-t.C:
		}
	}
	return e
}

// appendLine appends the group.log line of an entry to p.
func appendLine(p []byte, t time.Time, node, text string) []byte {
	p = t.AppendFormat(p, time.RFC3339Nano)
	p = append(p, ' ')
	p = append(p, node...)
	p = append(p, ' ')
	p = append(p, text...)
	return append(p, '\n')
}

// retainLocked keeps e for Subscribe: the latest Retain entries, and every
// entry not yet in group.log (a subscriber reads older ones from the
// file). Trimming copies, so it is done once at least half can go.
func (b *Book) retainLocked(e Entry) {
	if len(b.entries) >= 2*Retain {
		cut := len(b.entries) - Retain + 1
		if first := b.entries[0].Seq; b.written+1-first < uint64(cut) {
			cut = int(b.written + 1 - first) // the first entry not written
		}
		if 2*cut >= len(b.entries) {
			b.entries = append(b.entries[:0], b.entries[cut:]...)
		}
	}
	b.entries = append(b.entries, e)
}

// retainedLocked is what Subscribe replays: the latest Retain entries, or
// more while older ones are not yet in group.log.
func (b *Book) retainedLocked() []Entry {
	start := max(0, len(b.entries)-Retain)
	if len(b.entries) > 0 && b.written < b.entries[start].Seq {
		start = max(0, int(b.written+1-b.entries[0].Seq))
	}
	return b.entries[start:]
}

// maxSpare bounds the batch buffer the writer keeps for reuse.
const maxSpare = 1 << 20

// writeGroup writes the queued lines to group.log, batch after batch,
// until the queue is empty; the last writer after Close closes the file.
// One runs at a time (b.writing).
func (b *Book) writeGroup() {
	for {
		b.mu.Lock()
		if len(b.pending) == 0 {
			b.writing = false
			closeFile, idle := b.closed, b.idle
			b.mu.Unlock()
			if closeFile {
				err := b.group.Close()
				b.mu.Lock()
				if err != nil {
					b.closeErr = fmt.Errorf("logbook: close group log: %w", err)
				}
				b.mu.Unlock()
			}
			close(idle)
			return
		}
		batch, upto := b.pending, b.seq
		b.pending, b.spare = b.spare[:0], nil
		drained := b.drained
		b.drained = make(chan struct{})
		b.mu.Unlock()
		close(drained)

		_, err := b.group.Write(batch)

		b.mu.Lock()
		b.written = upto
		if err != nil && b.writeErr == nil {
			b.writeErr = fmt.Errorf("logbook: write group log: %w", err)
		}
		if cap(batch) <= maxSpare {
			b.spare = batch[:0]
		}
		b.mu.Unlock()
	}
}

// Subscribe returns the retained entries (the latest Retain) with Seq >= from
// and a channel of the entries logged after them, with no gap and no
// duplicate. The channel has a buffer of buf entries (at least 1); if it is
// full when a new entry arrives the subscriber is dropped and the channel
// closed, so a slow reader never blocks Line. cancel closes the channel; it
// is idempotent. After Close the channel is already closed.
func (b *Book) Subscribe(from uint64, buf int) (entries []Entry, ch <-chan Entry, cancel func()) {
	buf = max(buf, 1)
	b.mu.Lock()
	defer b.mu.Unlock()

	retained := b.retainedLocked()
	start := uint64(0)
	if len(retained) > 0 && from > retained[0].Seq {
		start = min(uint64(len(retained)), from-retained[0].Seq) // Seqs are contiguous.
	}
	entries = append([]Entry{}, retained[start:]...)

	s := &subscriber{ch: make(chan Entry, buf)}
	if b.closed {
		close(s.ch)
		return entries, s.ch, func() {}
	}
	b.subs[s] = struct{}{}
	cancel = func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.dropLocked(s)
	}
	return entries, s.ch, cancel
}

// dropLocked removes s and closes its channel, once. b.mu must be held.
func (b *Book) dropLocked(s *subscriber) {
	if _, ok := b.subs[s]; ok {
		delete(b.subs, s)
		close(s.ch)
	}
}

// Close closes the log files and the subscriber channels, once every line
// logged is in group.log (it waits for the writer, at most closeWait). It
// is idempotent; Line and writes to Raw writers after Close are ignored.
// It returns the first error met writing or closing the files.
func (b *Book) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	for s := range b.subs {
		b.dropLocked(s)
	}
	var idle chan struct{}
	if b.writing {
		idle = b.idle // the writer closes the file when it is done
	}
	b.mu.Unlock()

	var errs []error
	if idle != nil {
		t := time.NewTimer(closeWait)
		defer t.Stop()
		select {
		case <-idle:
		case <-t.C:
			errs = append(errs, fmt.Errorf("logbook: group log still being written after %v", closeWait))
		}
	} else if err := b.group.Close(); err != nil {
		errs = append(errs, fmt.Errorf("logbook: close group log: %w", err))
	}
	b.mu.Lock()
	errs = append(errs, b.writeErr, b.closeErr)
	b.mu.Unlock()

	b.rawMu.Lock()
	defer b.rawMu.Unlock()
	b.rawClosed = true
	for _, w := range b.raws {
		errs = append(errs, w.close())
	}
	return errors.Join(errs...)
}

// Raw returns a writer that appends raw console bytes of node to
// dir/logs/<node>.log, creating the file on the first write. Writers of
// different nodes may be used concurrently; the writer of one node is also
// safe for concurrent use. Writing fails for a node name that is not a plain
// file name (empty, ".", "..", containing a path separator) or is "group".
// After Close, writes are ignored.
func (b *Book) Raw(node string) io.Writer {
	b.rawMu.Lock()
	defer b.rawMu.Unlock()
	if b.rawClosed {
		return io.Discard
	}
	w, ok := b.raws[node]
	if !ok {
		w = &rawWriter{node: node, path: filepath.Join(b.logs, node+".log"), limit: b.rawLimit, masks: b.masks}
		b.raws[node] = w
	}
	return w
}

type rawWriter struct {
	node  string
	path  string
	limit int64
	masks *masker

	held []byte // the tail of the last write, which may begin a secret

	mu      sync.Mutex // guards the fields below
	f       *os.File
	written int64
	closed  bool
}

func (w *rawWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.written > w.limit {
		return len(p), nil
	}
	if w.masks != nil {
		var out []byte
		out, w.held = w.masks.stream(append(w.held, p...))
		if _, err := w.write(out); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return w.write(p)
}

// write appends p to the file, within the limit; w.mu is held.
func (w *rawWriter) write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if w.f == nil {
		if err := checkNode(w.node); err != nil {
			return 0, err
		}
		f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return 0, fmt.Errorf("logbook: open raw log of %s: %w", w.node, err)
		}
		w.f = f
	}
	keep := p
	if room := w.limit - w.written; int64(len(p)) > room {
		keep = append(p[:room:room], "\n"+Dropped(w.limit)+"\n"...)
		w.written = w.limit + 1 // cut: nothing more is written
	} else {
		w.written += int64(len(p))
	}
	if _, err := w.f.Write(keep); err != nil {
		return 0, fmt.Errorf("logbook: write raw log of %s: %w", w.node, err)
	}
	return len(p), nil
}

func (w *rawWriter) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var werr error
	if len(w.held) > 0 && w.written <= w.limit {
		_, werr = w.write(w.masks.all(w.held))
		w.held = nil
	}
	w.closed = true
	if werr != nil {
		return werr
	}
	if w.f == nil {
		return nil
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("logbook: close raw log of %s: %w", w.node, err)
	}
	return nil
}

// checkNode rejects node names that are not safe as a log file name.
func checkNode(node string) error {
	if node == "" || node == "." || node == ".." || node == "group" ||
		strings.ContainsAny(node, `/\`) || strings.ContainsRune(node, 0) {
		return fmt.Errorf("logbook: invalid node name %q", node)
	}
	return nil
}

// Escape makes s a single printable line: every control character except
// tab (newlines, carriage returns, escapes, DEL, C1 controls) and every
// invalid UTF-8 byte is replaced by a visible escape such as "\x1b" or
// "\u0085".
func Escape(s string) string {
	if !needsEscape(s) {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&sb, `\x%02x`, s[i])
		case r == '\t' || !unicode.IsControl(r):
			sb.WriteString(s[i : i+size])
		case r < utf8.RuneSelf:
			fmt.Fprintf(&sb, `\x%02x`, r)
		default:
			fmt.Fprintf(&sb, `\u%04x`, r)
		}
		i += size
	}
	return sb.String()
}

func needsEscape(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if r != '\t' && unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// Masker replaces every occurrence of each of values (a job's secrets) in
// a text with Masked, the longest value first where values overlap; empty
// values are ignored. Logs are masked as they are written (Mask); Masker
// is for whole texts: a job's source, its results.
func Masker(values []string) *strings.Replacer {
	vs := slices.DeleteFunc(slices.Clone(values), func(v string) bool { return v == "" })
	slices.SortStableFunc(vs, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(vs))
	for _, v := range vs {
		pairs = append(pairs, v, Masked)
	}
	return strings.NewReplacer(pairs...)
}
