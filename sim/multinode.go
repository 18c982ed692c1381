package sim

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"

	"github.com/troupe-lab/troupe/internal/sockpair"
)

// MultiNodeFD is the descriptor of the MultiNode side channel in every
// process of a sim board (inherited from its shell), named by the
// environment variable MultiNodeFDVar. The test shell's helpers send their
// requests there and read the replies, instead of going through the
// console: troupe reads the other end directly (testshell.Shell.Serve).
// It is a descriptor, not a path: a board's processes reach only their own
// board's channel, and every request on it is its node's.
const (
	MultiNodeFD    = 8
	MultiNodeFDVar = "TROUPE_MN_FD"
)

// mnChannel is the side channel of one power-on: a connected pair of Unix
// stream sockets, one end for troupe, one for the board's shells. A new
// pair at every power-on: nothing a process of an earlier power-on wrote
// can reach the next one.
type mnChannel struct {
	harness net.Conn // troupe's end (netpoller: a blocked read costs no thread)
	board   *os.File // inherited by the board's shells
}

func newMNChannel() (*mnChannel, error) {
	conn, board, err := sockpair.New("multinode")
	if err != nil {
		return nil, fmt.Errorf("multinode channel: %w", err)
	}
	return &mnChannel{harness: conn, board: board}, nil
}

func (c *mnChannel) close() {
	_ = c.harness.Close()
	_ = c.board.Close()
}

// boardEnd is the board's end, or nil without a channel.
func (c *mnChannel) boardEnd() *os.File {
	if c == nil {
		return nil
	}
	return c.board
}

// mnFiles is the ExtraFiles of a shell that gets f as MultiNodeFD.
func mnFiles(f *os.File) []*os.File {
	files := make([]*os.File, MultiNodeFD-2)
	files[MultiNodeFD-3] = f
	return files
}

// mnEnv is the shell's environment entry naming the channel's descriptor.
var mnEnv = MultiNodeFDVar + "=" + strconv.Itoa(MultiNodeFD)

// OpenMultiNodeChannel makes a MultiNode side channel for the board's
// next power-on and returns troupe's end of it: the shells of that
// power-on get the board's end as MultiNodeFD (and MultiNodeFDVar in their
// environment); its power-off, or Close, closes it. Without a call the
// board has no side channel and its helpers use the console. A channel
// asked for earlier and not yet used is closed.
func (b *Board) OpenMultiNodeChannel() (io.ReadWriteCloser, error) {
	c, err := newMNChannel()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.o.Name, err)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		c.close()
		return nil, fmt.Errorf("multinode channel of %s: %w", b.o.Name, ErrClosed)
	}
	old := b.nextMN
	b.nextMN = c
	b.mu.Unlock()
	if old != nil {
		old.close()
	}
	return c.harness, nil
}
