package testshell

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/troupe-lab/troupe/coordinator"
)

// Bounds of a MultiNode side channel: everything on it comes from the
// board's own processes, so it is hostile.
const (
	// MaxRequest is the longest request line taken, newline included; a
	// longer one is refused (nack) and skipped.
	MaxRequest = 4096
	// MaxInFlight is how many calls of one board may be pending at once;
	// further requests are not read until one ends (the socket's buffer,
	// then its writers, wait).
	MaxInFlight = 4
	// RequestEvery and RequestBurst bound the rate of requests of one
	// board: RequestBurst at once, then one per RequestEvery.
	RequestEvery = 2 * time.Millisecond
	RequestBurst = 64
)

// Serve answers the MultiNode requests that the board's helpers send on
// ch, a side channel of the board that bypasses its console (sim boards: a
// Unix socket that every process of the board inherits as fd
// $TROUPE_MN_FD). A request is a line of the console protocol (a request
// marker); its reply is the short line of SideReply (the helper reads a
// reply one byte per read(2): every byte costs each member of a barrier a
// system call); the replies come straight from the coordinator. Whatever arrives on ch is a call of this shell's node: the
// lines name no node. Each request line is also given to log (the node's
// log shows its MultiNode calls as it would on a console). Serve returns
// when reading ch fails (the board's power-off closes it) or ctx ends;
// the caller then closes ch, which ends any reply still being written.
// ch must allow a Write while another is in progress (a net.Conn does).
func (s *Shell) Serve(ctx context.Context, ch io.ReadWriter, log func(line string)) error {
	r := bufio.NewReaderSize(ch, MaxRequest)
	slots := make(chan struct{}, MaxInFlight)
	w := newReplier(ch)
	var tat time.Time // the rate limit's theoretical arrival time (GCRA)
	for {
		line, err := r.ReadSlice('\n')
		tooLong := errors.Is(err, bufio.ErrBufferFull)
		for errors.Is(err, bufio.ErrBufferFull) { // skip the rest of the line
			_, err = r.ReadSlice('\n')
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return nil // the board's power-off closed the channel
			}
			return fmt.Errorf("multinode side channel: %w", err)
		}
		if err := wait(ctx, &tat); err != nil {
			return nil
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		// A call's slot is free once its reply is out (written, not only
		// queued: a board that reads no replies holds its slots), or once
		// it ends without one.
		release := func() { <-slots }
		if tooLong {
			log(fmt.Sprintf("troupe: a MultiNode request longer than %d bytes was refused", MaxRequest))
			w.write(SideReply(coordinator.Reply{Err: fmt.Sprintf("request longer than %d bytes", MaxRequest)}), release)
			continue
		}
		text := strings.TrimRight(string(line), "\r\n")
		log(text)
		replied := false // reply and done run one after the other, on one goroutine
		s.request(text, true, w.raw != nil, func(_ coordinator.Kind, r coordinator.Reply) { replied = true; w.write(SideReply(r), release) }, func() {
			if !replied {
				release()
			}
		})
	}
}

// SideReply is the line (without its newline) that answers a call on the
// side channel: "+" and the reply marker's pairs (" sender:key=value"
// each) for an OK reply, "-" and the reason for a nack. The helper turns
// it back into the reply marker of the call it made (FormatReply).
func SideReply(r coordinator.Reply) string {
	if !r.OK {
		return "-" + strings.NewReplacer("\n", " ", "\r", " ").Replace(r.Err)
	}
	var b strings.Builder
	b.WriteByte('+')
	for _, m := range r.Data {
		fmt.Fprintf(&b, " %s:%s=%s", m.Sender, m.Key, m.Value)
	}
	return b.String()
}

// replier writes the replies of a side channel without blocking its
// caller (the coordinator's goroutine, releasing a barrier's members in
// one pass): a reply is written at once if the channel's buffer takes it
// whole; otherwise it, and every reply after it, waits in order for a
// goroutine that writes them as the board reads. At most MaxInFlight
// replies wait: each holds its call's slot until it is written.
type replier struct {
	ch  io.Writer
	raw syscall.RawConn // nil: replies are written by the caller, blocking

	mu    sync.Mutex
	busy  bool // a write is under way: later replies queue behind it
	queue []queuedReply
}

type queuedReply struct {
	b    []byte
	done func()
}

func newReplier(ch io.Writer) *replier {
	w := &replier{ch: ch}
	if sc, ok := ch.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			w.raw = raw
		}
	}
	return w
}

// write sends line and a newline, then calls done (at once, or from the
// goroutine once the line is written or the channel has failed).
func (w *replier) write(line string, done func()) {
	b := make([]byte, 0, len(line)+1)
	b = append(append(b, line...), '\n')
	if w.raw == nil { // no non-blocking write: write here (never on the coordinator's goroutine)
		_, _ = w.ch.Write(b)
		done()
		return
	}
	w.mu.Lock()
	if w.busy {
		w.queue = append(w.queue, queuedReply{b, done})
		w.mu.Unlock()
		return
	}
	w.busy = true
	w.mu.Unlock()
	n := w.try(b)
	w.mu.Lock()
	if n < len(b) {
		w.queue = append([]queuedReply{{b[n:], done}}, w.queue...)
		done = nil
	}
	if len(w.queue) > 0 {
		go w.drain() // stays busy
	} else {
		w.busy = false
	}
	w.mu.Unlock()
	if done != nil {
		done()
	}
}

// try writes what the channel takes now without waiting; it returns how
// many bytes were written.
func (w *replier) try(b []byte) int {
	n := 0
	_ = w.raw.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, err := syscall.Write(int(fd), b[n:])
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil || m <= 0 {
				break
			}
			n += m
		}
		return true
	})
	return n
}

// drain writes the queued replies in order, waiting for the board to read
// them; a failed channel (closed at power-off) ends each write at once.
func (w *replier) drain() {
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.busy = false
			w.mu.Unlock()
			return
		}
		q := w.queue[0]
		w.queue = w.queue[1:]
		w.mu.Unlock()
		_, _ = w.ch.Write(q.b)
		q.done()
	}
}

// wait holds a request back until the rate limit lets it through.
func wait(ctx context.Context, tat *time.Time) error {
	now := time.Now()
	if tat.Before(now) {
		*tat = now
	}
	*tat = tat.Add(RequestEvery)
	d := tat.Sub(now) - RequestEvery*RequestBurst
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
