package actors

import (
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/internal/manualclock"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/workers/workerpb"
)

// releaseRig is board proxies of one worker whose boards actor holds the
// CloseBoard requests for the test to answer.
type releaseRig struct {
	t       *testing.T
	system  *actor.ActorSystem
	clock   *manualclock.Clock
	closes  chan closeReq
	stillOn chan *boardStillOn
	rb      RemoteBoard
	gone    chan struct{}
	group   *actor.PID
}

func newReleaseRig(t *testing.T) *releaseRig {
	r := &releaseRig{t: t, system: actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	})), clock: manualclock.New(),
		closes: make(chan closeReq, 10), stillOn: make(chan *boardStillOn, 10)}
	t.Cleanup(r.system.Shutdown)
	boards := r.system.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case *workerpb.OpenBoard:
			c.Respond(&workerpb.BoardOpened{Worker: "w1", Session: m.Session})
		case *workerpb.CloseBoard:
			r.closes <- closeReq{m.Session, c.Sender()}
		}
	}))
	group := r.system.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(*boardStillOn); ok {
			r.stillOn <- m
		}
	}))
	r.gone = make(chan struct{})
	r.rb = RemoteBoard{Worker: "w1", Boards: boards, Gone: r.gone}
	r.group = group
	return r
}

// proxy opens a board through a proxy; stopping it releases the board.
func (r *releaseRig) proxy(name string) *actor.PID {
	cfg := Config{Job: &jobs.Job{Name: "j"}, Clock: r.clock, Logger: slog.New(slog.DiscardHandler)}
	return r.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &boardProxy{cfg: cfg, node: "n-" + name, board: lab.Board{Name: name}, rb: r.rb, group: r.group, next: 1,
			held: map[uint64]*workerpb.ConsoleLines{}}
	}))
}

// closeReq is a CloseBoard the worker got: its session and who waits.
type closeReq struct {
	session string
	sender  *actor.PID
}

func (r *releaseRig) closeRequest() closeReq {
	r.t.Helper()
	select {
	case c := <-r.closes:
		return c
	case <-time.After(10 * time.Second):
		r.t.Fatal("no CloseBoard")
		return closeReq{}
	}
}

// waitTimers waits (polling, bounded) until n timers are armed.
func (r *releaseRig) waitTimers(n int) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.clock.Armed() != n {
		require.True(r.t, time.Now().Before(deadline), "%d timers armed, want %d", r.clock.Armed(), n)
		time.Sleep(time.Millisecond) // a deadline poll
	}
}

// TestProxyReleaseWaitsForBusyWorker: a worker powering off many boards
// at once takes longer for each than one board's own bound (the board
// actor's releaseTimeout and stuckAfter); its proxies wait while it lives
// and its answers are confirmations, not "did not confirm". A live worker
// that never answers is given up after closeLimit; a lost one is not
// waited for.
func TestProxyReleaseWaitsForBusyWorker(t *testing.T) {
	r := newReleaseRig(t)
	var proxies []*actor.PID
	for _, b := range []string{"b1", "b2", "b3"} {
		proxies = append(proxies, r.proxy(b))
	}
	r.waitTimers(0) // opened
	stopped := map[string]*actor.Future{}
	for _, p := range proxies {
		stopped[p.Id] = r.system.Root.StopFuture(p)
	}
	var answers []closeReq
	for range proxies {
		answers = append(answers, r.closeRequest())
	}
	r.waitTimers(3) // one closeLimit per proxy
	// The worker answers one every 35 s, each later than one board's own
	// bound.
	oneBoard := releaseTimeout + stuckAfter
	for i, a := range answers {
		r.clock.Advance(35 * time.Second)
		require.Less(t, time.Duration(i+1)*35*time.Second, closeLimit)
		require.Greater(t, 35*time.Second, oneBoard)
		r.system.Root.Send(a.sender, &workerpb.BoardClosed{Worker: "w1", Session: a.session})
		require.NoError(t, stopped[a.session].Wait())
	}
	select {
	case m := <-r.stillOn:
		t.Fatalf("board %s: %v", m.board, m.err)
	default:
	}

	// Live and silent: given up after closeLimit.
	p := r.proxy("b4")
	r.waitTimers(0)
	done := r.system.Root.StopFuture(p)
	r.closeRequest()
	r.waitTimers(1)
	r.clock.Advance(closeLimit)
	require.NoError(t, done.Wait())
	select {
	case m := <-r.stillOn:
		assert.Equal(t, "b4", m.board)
		assert.ErrorContains(t, m.err, "worker w1 did not confirm the release within 2m0s")
	case <-time.After(10 * time.Second):
		t.Fatal("a silent worker's release reported as confirmed")
	}

	// Lost: not waited for, and not reported (the worker powers the board
	// off when it returns).
	p = r.proxy("b5")
	r.waitTimers(0)
	done = r.system.Root.StopFuture(p)
	r.closeRequest()
	close(r.gone)
	require.NoError(t, done.Wait())
	assert.Empty(t, r.stillOn)
}
