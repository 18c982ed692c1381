package testshell_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/troupe-lab/troupe/coordinator"
	"github.com/troupe-lab/troupe/testshell"
)

// starterMN is a coordinator stand-in that takes calls with Start (as the
// actors' mnClient does) and answers them from a goroutine of its own,
// the coordinator's: a call is answered once hold is nil or closed. Call
// must never be used for a side-channel call: it fails the test.
type starterMN struct {
	fakeMN
	t       *testing.T
	pending chan func()
	started atomic.Int64
	// answered counts answers given; stuck is set if one took longer than
	// a second (an answer must never block the coordinator).
	answered atomic.Int64
	stuck    atomic.Bool
	wg       sync.WaitGroup
}

func newStarterMN(t *testing.T, hold chan struct{}) *starterMN {
	m := &starterMN{t: t, pending: make(chan func(), 1<<12)}
	m.hold = hold
	m.wg.Add(1)
	go func() { // the coordinator's goroutine
		defer m.wg.Done()
		for f := range m.pending {
			if m.hold != nil {
				<-m.hold
			}
			watch := time.AfterFunc(time.Second, func() { m.stuck.Store(true) })
			f()
			watch.Stop()
			m.answered.Add(1)
		}
	}()
	t.Cleanup(func() {
		close(m.pending)
		m.wg.Wait()
	})
	return m
}

func (m *starterMN) Call(context.Context, coordinator.Request) (coordinator.Reply, error) {
	m.t.Error("Call used for a call that Start could take")
	return coordinator.Reply{}, errors.New("Call used")
}

func (m *starterMN) Start(r coordinator.Request, answer func(coordinator.Reply, error)) {
	m.mu.Lock()
	m.calls = append(m.calls, r)
	m.times = append(m.times, time.Now())
	m.mu.Unlock()
	m.started.Add(1)
	rep := coordinator.Reply{Kind: r.Kind, ID: r.ID, OK: true}
	if r.Kind == coordinator.Wait || r.Kind == coordinator.WaitAll {
		rep.Data = []coordinator.Message{{Sender: "peer-0", Key: "k", Value: r.ID}}
	}
	m.pending <- func() { answer(rep, nil) }
}

// TestSideChannelStarter: with a coordinator that takes calls with Start,
// the side channel's calls go that way (no goroutine waits per call: Call
// is never used) and the helpers get the same replies as through Call.
func TestSideChannelStarter(t *testing.T) {
	mn := newStarterMN(t, nil)
	r := newMNRig(t, mn, true)
	runMNScript(t, r)
	assert.Len(t, mn.requests(), 5)
	assert.False(t, mn.stuck.Load(), "an answer blocked the coordinator")
}

// TestSideChannelStarterRunEnds: a call taken with Start and never
// answered does not hold the run: when the run ends the call ends with
// it (Run returns), and an answer coming after that writes nothing.
func TestSideChannelStarterRunEnds(t *testing.T) {
	hold := make(chan struct{})
	mn := newStarterMN(t, hold)
	r := newMNRig(t, mn, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := r.sh.Run(ctx, testshell.Test{Name: "mn", Script: "troupe-sync never"})
		done <- err
	}()
	require.Eventually(t, func() bool { return mn.started.Load() == 1 }, waitTO, 10*time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(waitTO):
		t.Fatal("Run did not return while a started call was pending")
	}
	close(hold) // the late answer: nothing must be written or counted
	require.Eventually(t, func() bool { return mn.answered.Load() == 1 }, waitTO, 10*time.Millisecond)
	assert.False(t, mn.stuck.Load())
}

// TestReplierNeverBlocks: a board that sends requests and reads none of
// its replies can neither block the coordinator's goroutine (each answer
// returns at once; the replies the channel cannot take wait in order) nor
// grow what troupe holds for it (its calls hold their slots until their
// replies are written: Serve stops reading). Once it reads, it gets every
// reply, in order.
func TestReplierNeverBlocks(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	// The smallest send buffer: a few replies fill it.
	require.NoError(t, unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 1))
	hf := os.NewFile(uintptr(fds[0]), "harness")
	harness, err := net.FileConn(hf)
	require.NoError(t, err)
	require.NoError(t, hf.Close())
	board := os.NewFile(uintptr(fds[1]), "board")

	mn := newStarterMN(t, nil)
	t.Cleanup(func() { // before the coordinator's goroutine is waited for
		_ = board.Close()
		_ = harness.Close()
	})
	// A run must be going for calls to reach the coordinator: a script
	// that waits on a console that never answers.
	con := &silentConsole{}
	sh := testshell.New(con, mn)
	sh.PutFilesWith(func(map[string][]byte, fs.FileMode) error { return nil })
	runCtx, endRun := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		_, _ = sh.Run(runCtx, testshell.Test{Name: "t", Script: "true"})
	}()
	require.Eventually(t, con.sent, waitTO, 10*time.Millisecond)

	served := make(chan error, 1)
	go func() { served <- sh.Serve(context.Background(), harness, func(string) {}) }()
	const n = 200
	wrote := make(chan error, 1)
	go func() {
		w := bufio.NewWriter(board)
		for i := range n {
			fmt.Fprintf(w, "<LAVA_MULTI_NODE> <LAVA_WAIT m%d>\n", i)
		}
		wrote <- w.Flush()
	}()
	// Serve stops taking calls once the unread replies fill the buffer
	// and the calls waiting behind them hold every slot.
	var last int64 = -1
	require.Eventually(t, func() bool {
		cur := mn.started.Load()
		settled := cur == last && cur > 0 && mn.answered.Load() == cur
		last = cur
		return settled
	}, waitTO, 1500*time.Millisecond)
	held := mn.started.Load()
	assert.Less(t, held, int64(n), "Serve kept taking calls whose replies nobody reads")
	assert.False(t, mn.stuck.Load(), "an answer blocked the coordinator")

	rd := bufio.NewReader(board)
	for i := range n {
		line, err := rd.ReadString('\n')
		require.NoError(t, err, "reply %d", i)
		require.Equal(t, fmt.Sprintf("+ peer-0:k=m%d\n", i), line)
	}
	require.NoError(t, <-wrote)
	assert.False(t, mn.stuck.Load(), "an answer blocked the coordinator")
	assert.EqualValues(t, n, mn.started.Load())

	require.NoError(t, board.Close())
	select {
	case err := <-served:
		assert.NoError(t, err)
	case <-time.After(waitTO):
		t.Fatal("Serve did not end when the board's end closed")
	}
	require.NoError(t, harness.Close())
	endRun()
	<-ran
}

// silentConsole takes what is sent and never shows an end marker: a run
// lasts until its context ends.
type silentConsole struct{ n atomic.Int64 }

func (c *silentConsole) Expect(ctx context.Context, _ *regexp.Regexp) ([]string, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (c *silentConsole) Send(string) error { c.n.Add(1); return nil }

func (c *silentConsole) sent() bool { return c.n.Load() > 0 }
