package actors

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/coordinator"
)

// mnCall is a MultiNode call from a node's test shell. The reply goes to
// answer if set (called on the coordinator's goroutine: it must not
// block), else to the channel, which has room for one reply.
type mnCall struct {
	req    coordinator.Request
	reply  chan coordinator.Reply
	answer func(coordinator.Reply)
}

// give hands the call its reply.
func (c *mnCall) give(r coordinator.Reply) {
	if c.answer != nil {
		c.answer(r)
		return
	}
	c.reply <- r
}

// nodeEnded tells the coordinator that a node can never send or arrive again.
type nodeEnded struct{ node, reason string }

// coordTick fires at the coordinator's next deadline.
type coordTick struct{}

// coordActor is the MultiNode coordinator of one group: a thin actor around
// coordinator.Group that pushes each reply to its waiting node the moment
// it is due. Nothing polls.
type coordActor struct {
	cfg     Config
	group   *coordinator.Group
	waiting map[string]mnCall // node → its pending blocking call
	armed   time.Time
	stop    func() bool
}

func newCoordActor(cfg Config, g *coordinator.Group) *coordActor {
	return &coordActor{cfg: cfg, group: g, waiting: map[string]mnCall{}}
}

func (a *coordActor) Receive(ctx actor.Context) {
	now := a.cfg.Clock.Now()
	switch m := ctx.Message().(type) {
	case *mnCall:
		if m.req.Kind != coordinator.Send {
			a.waiting[m.req.Node] = *m
		}
		replies, err := a.group.Handle(now, m.req)
		if err != nil {
			m.give(coordinator.Reply{Node: m.req.Node, Kind: m.req.Kind, ID: m.req.ID, Err: err.Error()})
			delete(a.waiting, m.req.Node)
			break
		}
		released := 0
		for _, r := range replies {
			if r.Kind == coordinator.Sync && r.OK {
				released++
			}
			if r.Kind == coordinator.Send && r.Node == m.req.Node {
				m.give(r)
				continue
			}
			a.deliver(r)
		}
		if released > 0 {
			// When each barrier ends, for whoever looks at the job's pace
			// (the runner benchmarks time a barrier from one to the next).
			a.cfg.Logger.Debug("barrier released", "job", a.cfg.Job.Name, "id", m.req.ID, "members", released)
		}
	case *nodeEnded:
		for _, r := range a.group.Ended(now, m.node, m.reason) {
			a.deliver(r)
		}
		delete(a.waiting, m.node)
	case *coordTick:
		a.armed = time.Time{}
		for _, r := range a.group.Tick(now) {
			a.deliver(r)
		}
	case *actor.Stopping:
		if a.stop != nil {
			a.stop()
		}
		return
	}
	a.arm(ctx, now)
}

// deliver pushes a reply to the node's pending call, if it is still the
// call the reply answers. A barrier's release delivers to every member in
// this one pass: a call started with mnClient.Start has its reply written
// to the board's side channel right here, with no goroutine to wake.
func (a *coordActor) deliver(r coordinator.Reply) {
	c, ok := a.waiting[r.Node]
	if !ok || c.req.Kind != r.Kind || c.req.ID != r.ID {
		return
	}
	delete(a.waiting, r.Node)
	c.give(r)
}

// arm sets the timer for the next deadline of a pending call.
func (a *coordActor) arm(ctx actor.Context, now time.Time) {
	next, ok := a.group.NextDeadline()
	if !ok || next.Equal(a.armed) {
		return
	}
	if a.stop != nil {
		a.stop()
	}
	a.armed = next
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.stop = a.cfg.Clock.AfterFunc(next.Sub(now), func() { root.Send(self, &coordTick{}) })
}

// mnClient is how a board's test shell reaches the coordinator.
type mnClient struct {
	root    *actor.RootContext
	coord   *actor.PID
	node    string
	timeout time.Duration // per blocking call
}

// slack is how much longer than the call's own timeout a client waits for
// the coordinator, which answers timeouts itself.
const slack = 5 * time.Second

// Start hands r to the coordinator and returns at once; answer gets the
// reply (or an error if none came within the call's timeout and slack)
// exactly once, from the coordinator's goroutine or a timer's: it must
// not block (testshell.Starter).
func (c mnClient) Start(r coordinator.Request, answer func(coordinator.Reply, error)) {
	r.Node = c.node
	if r.Kind != coordinator.Send {
		r.Timeout = c.timeout
	}
	var once atomic.Bool
	wait := c.timeout + slack
	t := time.AfterFunc(wait, func() {
		if once.CompareAndSwap(false, true) {
			answer(coordinator.Reply{}, fmt.Errorf("no answer from the coordinator within %s", wait))
		}
	})
	c.root.Send(c.coord, &mnCall{req: r, answer: func(rep coordinator.Reply) {
		if once.CompareAndSwap(false, true) {
			t.Stop()
			answer(rep, nil)
		}
	}})
}

func (c mnClient) Call(ctx context.Context, r coordinator.Request) (coordinator.Reply, error) {
	r.Node = c.node
	if r.Kind != coordinator.Send {
		r.Timeout = c.timeout
	}
	reply := make(chan coordinator.Reply, 1)
	c.root.Send(c.coord, &mnCall{req: r, reply: reply})
	t := time.NewTimer(c.timeout + slack)
	defer t.Stop()
	select {
	case rep := <-reply:
		return rep, nil
	case <-ctx.Done():
		return coordinator.Reply{}, ctx.Err()
	case <-t.C:
		return coordinator.Reply{}, fmt.Errorf("no answer from the coordinator within %s", c.timeout+slack)
	}
}
