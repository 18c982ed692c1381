package testshell_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/troupe-lab/troupe/testshell"
)

// pipeChannel is a side channel whose reads come from in and whose writes
// are kept.
type pipeChannel struct {
	in  io.Reader
	mu  sync.Mutex
	out bytes.Buffer
}

func (c *pipeChannel) Read(p []byte) (int, error) { return c.in.Read(p) }

func (c *pipeChannel) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

// FuzzServe: whatever a board's processes write on the side channel, Serve
// ends at its end without a panic, answers each line at most once, and
// every answer is one reply line (here no test runs: a nack, SideReply).
func FuzzServe(f *testing.F) {
	f.Add([]byte("<LAVA_MULTI_NODE> <LAVA_SYNC s1>\n"))
	f.Add([]byte("<LAVA_MULTI_NODE> <LAVA_SEND id k=v a=b>\ngarbage\n\n"))
	f.Add(bytes.Repeat([]byte("x"), testshell.MaxRequest+10))
	f.Add([]byte("<LAVA_MULTI_NODE> <LAVA_WAIT_ALL id role extra>\r\n<LAVA_MULTI_NODE> <LAVA_WAIT bad<id>\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// At most RequestBurst lines: past them the rate limit holds each
		// line back RequestEvery, and an input of many thousand empty
		// lines ran for minutes (a fuzz run of 30000 inputs stalled).
		if i := nthIndex(data, '\n', testshell.RequestBurst); i >= 0 {
			data = data[:i+1]
		}
		sh := testshell.New(nil, nil)
		ch := &pipeChannel{in: bytes.NewReader(data)}
		logged := 0
		if err := sh.Serve(context.Background(), ch, func(string) { logged++ }); err != nil {
			t.Fatalf("Serve: %v", err)
		}
		lines := bytes.Count(data, []byte("\n"))
		sc := bufio.NewScanner(&ch.out)
		replies := 0
		for sc.Scan() {
			replies++
			l := sc.Text()
			if !strings.HasPrefix(l, "-") {
				t.Fatalf("reply %q is not a nack (SideReply)", l)
			}
		}
		if replies > lines || logged > lines {
			t.Fatalf("%d replies, %d logged for %d lines", replies, logged, lines)
		}
	})
}

// nthIndex is the index of the nth (1-based) c in b, or -1.
func nthIndex(b []byte, c byte, n int) int {
	for i, x := range b {
		if x == c {
			if n--; n == 0 {
				return i
			}
		}
	}
	return -1
}
