package testshell

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
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
// $TROUPE_MN_FD). The lines are those of the console protocol: a request
// marker in, its reply marker out; the replies come straight from the
// coordinator. Whatever arrives on ch is a call of this shell's node: the
// lines name no node. Each request line is also given to log (the node's
// log shows its MultiNode calls as it would on a console). Serve returns
// when reading ch fails (the board's power-off closes it) or ctx ends;
// the caller then closes ch, which ends any reply still being written.
// ch must allow a Write while another is in progress (a net.Conn does).
func (s *Shell) Serve(ctx context.Context, ch io.ReadWriter, log func(line string)) error {
	r := bufio.NewReaderSize(ch, MaxRequest)
	slots := make(chan struct{}, MaxInFlight)
	reply := func(line string) { _, _ = io.WriteString(ch, line+"\n") }
	var tat time.Time // the rate limit's theoretical arrival time (GCRA)
	for {
		line, err := r.ReadSlice('\n')
		tooLong := errors.Is(err, bufio.ErrBufferFull)
		for errors.Is(err, bufio.ErrBufferFull) { // skip the rest of the line
			_, err = r.ReadSlice('\n')
		}
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
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
		release := func() { <-slots }
		if tooLong {
			log(fmt.Sprintf("troupe: a MultiNode request longer than %d bytes was refused", MaxRequest))
			reply(FormatReply("", coordinator.Reply{Err: fmt.Sprintf("request longer than %d bytes", MaxRequest)}))
			release()
			continue
		}
		text := strings.TrimRight(string(line), "\r\n")
		log(text)
		s.request(text, true, reply, release)
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
