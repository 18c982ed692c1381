package server

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/store"
)

// streamBuffer is how many lines a stream client may fall behind before
// it is told it lagged (and the server drops it): a slow client never
// blocks a board. A variable for tests.
var streamBuffer = 4096

const (
	writeWait = 10 * time.Second
	pingEvery = 20 * time.Second
)

var upgrader = websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 16 << 10}

// liveEvent is a frame of /api/v1/events.
type liveEvent struct {
	Type string  `json:"type"`
	Job  Summary `json:"job"`
}

// statusFrame is a job's status in its stream; the last one has Type "end".
type statusFrame struct {
	Type   string `json:"type"`
	Status string `json:"status"`
	Error  string `json:"error"`
	Job    any    `json:"job"`
}

type lagFrame struct {
	Type string `json:"type"`
	Seq  uint64 `json:"seq"`
}

// stream is GET /api/v1/jobs/{id}/stream[?node=N][&from=SEQ]: the merged
// log replayed from SEQ, then live, then the final status.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, _ caller) {
	lj, ok := s.get(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	from := uint64(1)
	if v := q.Get("from"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("from %q: want a sequence number >= 1", v))
			return
		}
		from = n
	}
	node := q.Get("node")
	bw := &batchWriter{ResponseWriter: w}
	conn, err := upgrader.Upgrade(bw, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	defer conn.Close()
	batch := bw.conn
	closed := readPump(conn)
	send := sender(conn)
	next := from          // the next seq the client needs
	var actionsRead int64 // how far into the job's actionsFile the client was sent
	sendActions := func() error {
		recs, off, err := readActions(lj.dir, actionsRead)
		if err != nil {
			return err
		}
		actionsRead = off
		for _, a := range recs {
			if node != "" && a.Node != node {
				continue
			}
			if err := send(a); err != nil {
				return err
			}
		}
		return nil
	}
	emit := func(e logbook.Entry) error {
		if e.Seq < next {
			return nil
		}
		next = e.Seq + 1
		if node != "" && e.Node != node {
			return nil
		}
		return send(e)
	}

	s.mu.Lock()
	book, final, status, changed := lj.book, lj.final, lj.rec.Status, lj.changed
	s.mu.Unlock()
	var live <-chan logbook.Entry
	if book != nil && !final {
		batch.Hold()
		entries, ch, cancel := book.Subscribe(from, streamBuffer)
		defer cancel()
		live = ch
		// Lines older than the book keeps in memory come from the file.
		if len(entries) > 0 && entries[0].Seq > from {
			if replayFile(lj.dir, from, entries[0].Seq, emit) != nil {
				return
			}
		}
		for _, e := range entries {
			if emit(e) != nil {
				return
			}
		}
		if sendActions() != nil || send(statusFrame{Type: "status", Status: status, Job: s.summaryOf(lj)}) != nil || batch.Flush() != nil {
			return
		}
	}
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	for live != nil {
		select {
		case e, ok := <-live:
			if !ok {
				live = nil
				break
			}
			// Send the lines already waiting with this one, in one write.
			batch.Hold()
			err := emit(e)
			for n := 0; err == nil && n < 512 && len(live) > 0; n++ {
				err = emit(<-live) // buffered: never blocks, never closed-empty
			}
			if err != nil || sendActions() != nil || batch.Flush() != nil {
				return
			}
		case <-changed:
			s.mu.Lock()
			st, sum := lj.rec.Status, lj.summary()
			changed = lj.changed
			s.mu.Unlock()
			if st != status && !store.Ended(st) {
				status = st
				if send(statusFrame{Type: "status", Status: st, Error: sum.Error, Job: sum}) != nil {
					return
				}
			}
		case <-ping.C:
			if sendActions() != nil || send(pingFrame{}) != nil {
				return
			}
		case <-closed:
			return
		case <-r.Context().Done():
			return
		}
	}
	// The live channel closed: the job ended (its book is closed once its
	// results are stored), or this client fell too far behind and was
	// dropped. The end is told within moments; a lag is not.
	if !s.awaitFinal(lj, 2*time.Second) {
		_ = send(lagFrame{Type: "lagged", Seq: next - 1})
		return
	}
	// Whatever the client has not seen yet is in the log file now.
	if replayFile(lj.dir, next, 0, emit) != nil || sendActions() != nil {
		return
	}
	s.mu.Lock()
	j := lj.full()
	s.mu.Unlock()
	_ = send(statusFrame{Type: "end", Status: j.Status, Error: j.Error, Job: j})
	_ = conn.SetWriteDeadline(time.Now().Add(writeWait))
	_ = conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "job ended"))
}

// pingFrame is a WebSocket ping for sender.
type pingFrame struct{}

// sender sends frames (a pingFrame as a ping, anything else as JSON) on
// conn, each within writeWait.
func sender(conn *websocket.Conn) func(any) error {
	return func(v any) error {
		_ = conn.SetWriteDeadline(time.Now().Add(writeWait))
		if _, ok := v.(pingFrame); ok {
			return conn.WriteMessage(websocket.PingMessage, nil)
		}
		return conn.WriteJSON(v)
	}
}

// awaitFinal waits up to d for lj's results to be stored and its log
// closed.
func (s *Server) awaitFinal(lj *liveJob, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		s.mu.Lock()
		final, changed := lj.final, lj.changed
		s.mu.Unlock()
		if final {
			return true
		}
		select {
		case <-changed:
		case <-t.C:
			return false
		}
	}
}

func (s *Server) summaryOf(lj *liveJob) Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	return lj.summary()
}

// readPump reads (and drops) what the client sends, so that pongs and
// close frames are handled; the channel closes when the client is gone.
func readPump(conn *websocket.Conn) <-chan struct{} {
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		conn.SetReadLimit(4096)
		for {
			if _, _, err := conn.NextReader(); err != nil {
				return
			}
		}
	}()
	return closed
}

// replayFile sends the entries of the job's merged log file with from <=
// seq < upto (upto 0: to the end). The file holds one line per entry, the
// n-th line being seq n: "<RFC3339Nano time> <node> <text>".
func replayFile(dir string, from, upto uint64, emit func(logbook.Entry) error) error {
	f, err := os.Open(filepath.Join(dir, "logs", logbook.GroupFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for seq := uint64(1); sc.Scan(); seq++ {
		if seq < from {
			continue
		}
		if upto != 0 && seq >= upto {
			return nil
		}
		e := logbook.Entry{Seq: seq}
		parts := strings.SplitN(sc.Text(), " ", 3)
		if len(parts) == 3 {
			e.Time, _ = time.Parse(time.RFC3339Nano, parts[0])
			e.Node, e.Text = parts[1], parts[2]
		}
		if err := emit(e); err != nil {
			return err
		}
	}
	return sc.Err()
}

// events is GET /api/v1/events: every job status change.
func (s *Server) events(w http.ResponseWriter, r *http.Request, _ caller) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	closed := readPump(conn)
	ch := make(chan *liveEvent, 1024)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	var first []*liveEvent
	for _, id := range s.order {
		if lj := s.jobs[id]; !store.Ended(lj.rec.Status) {
			first = append(first, &liveEvent{Type: "job", Job: lj.summary()})
		}
	}
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if _, ok := s.subs[ch]; ok {
			delete(s.subs, ch)
			close(ch)
		}
		s.mu.Unlock()
	}()
	send := sender(conn)
	for _, ev := range first {
		if send(ev) != nil {
			return
		}
	}
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return // too slow, or the server closes: the client reconnects
			}
			if send(ev) != nil {
				return
			}
		case <-ping.C:
			if send(pingFrame{}) != nil {
				return
			}
		case <-closed:
			return
		case <-r.Context().Done():
			return
		}
	}
}
