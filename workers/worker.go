package workers

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/labca"
	"github.com/troupe-lab/troupe/workers/workerpb"
)

// WorkerConfig is a worker process's end: who it is, its boards and where
// the server's hub is.
type WorkerConfig struct {
	Name        string
	Server      string // the server's --workers address
	Incarnation string // new at every start of the process
	Boards      []*workerpb.Board
	Clock       actors.Clock // nil: the wall clock
	Logger      *slog.Logger
	// LostAfter: a server that answers no heartbeat, and sends nothing
	// else, this long is gone; the worker registers again (0:
	// DefaultLostAfter).
	LostAfter time.Duration
	// Traffic is when the server's messages last arrived (any message,
	// recorded by the transport under labca.ServerName, read on Clock).
	// Nil: heartbeat answers only.
	Traffic *Traffic
	// MinBackoff and MaxBackoff bound the waits between registration
	// attempts, doubling from the first to the second (0: 500 ms, 10 s).
	MinBackoff, MaxBackoff time.Duration
	// Registered is told each time the server accepts the worker. Nil: none.
	Registered func()
	// Refused is told when the server refuses the registration (a board
	// name of another worker, say): the worker does not retry. Nil: none.
	Refused func(error)
	// Reset is called, and waited for, before the worker registers again
	// (the server restarted, forgot it, or could not be reached): it
	// releases the boards of the server's earlier sessions. Nil: none.
	Reset func()
}

// Worker is a worker process's registration with the server.
type Worker struct {
	system *actor.ActorSystem
	pid    *actor.PID
}

// StartWorker spawns the worker actor in system (whose remote must be
// started): it registers with the server, sends heartbeats, and registers
// again, with backoff, whenever the server is gone or forgot it.
func StartWorker(system *actor.ActorSystem, cfg WorkerConfig) *Worker {
	if cfg.Clock == nil {
		cfg.Clock = actors.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LostAfter <= 0 {
		cfg.LostAfter = DefaultLostAfter
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(10*time.Second, cfg.MinBackoff)
	}
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &workerActor{cfg: cfg, hub: actor.NewPID(cfg.Server, HubName), backoff: cfg.MinBackoff}
	}))
	return &Worker{system: system, pid: pid}
}

// Stop stops the worker actor.
func (w *Worker) Stop() error { return w.system.Root.StopFuture(w.pid).Wait() }

type workerTick struct{ gen int }

// serverPeer is the name the transport records the server's messages under.
const serverPeer = labca.ServerName

type workerActor struct {
	cfg        WorkerConfig
	hub        *actor.PID
	registered bool
	everJoined bool   // registered once: a new registration resets the boards first
	generation uint64 // of the registration (Register.generation)
	refused    bool
	heartbeat  time.Duration
	lastAck    time.Time
	backoff    time.Duration
	gen        int // of the armed timer; older ticks are ignored
	stop       func() bool
	due        time.Time // when the armed timer should fire
	graced     bool      // the last tick came late and judged nothing
}

func (a *workerActor) Receive(ctx actor.Context) {
	now := a.cfg.Clock.Now()
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.register(ctx)
	case *workerpb.Registered:
		if a.registered || a.refused {
			return
		}
		if m.Error != "" {
			a.refused = true
			a.disarm()
			err := errors.New(m.Error)
			a.cfg.Logger.Error("server refused the worker", "worker", a.cfg.Name, "err", err)
			if a.cfg.Refused != nil {
				a.cfg.Refused(fmt.Errorf("server refused worker %s: %w", a.cfg.Name, err))
			}
			return
		}
		a.registered, a.everJoined, a.lastAck, a.backoff = true, true, now, a.cfg.MinBackoff
		a.heartbeat = time.Duration(m.HeartbeatMs) * time.Millisecond
		if a.heartbeat <= 0 {
			a.heartbeat = DefaultHeartbeat
		}
		a.cfg.Logger.Info("worker registered", "worker", a.cfg.Name, "server", a.cfg.Server, "boards", len(a.cfg.Boards))
		if a.cfg.Registered != nil {
			a.cfg.Registered()
		}
		a.arm(ctx, a.heartbeat)
	case *workerpb.HeartbeatAck:
		if !a.registered {
			return
		}
		a.lastAck = now
		if !m.Known {
			a.cfg.Logger.Warn("server does not know the worker: registering again", "worker", a.cfg.Name)
			a.registered = false
			a.register(ctx)
		}
	case *workerTick:
		if m.gen != a.gen || a.refused {
			return
		}
		if !a.registered {
			a.register(ctx)
			return
		}
		last := a.lastAck
		if t := a.cfg.Traffic.Last(serverPeer); t.After(last) {
			last = t
		}
		judge := now.Sub(a.due) <= a.heartbeat || a.graced
		// A tick late by more than a heartbeat: this process was held up
		// (a starved host), and the server's answers may still be on
		// their way in. The next tick judges.
		a.graced = !judge
		if judge && now.Sub(last) >= a.cfg.LostAfter {
			a.cfg.Logger.Warn("server lost: registering again", "worker", a.cfg.Name, "server", a.cfg.Server,
				"silent", now.Sub(last).Round(time.Millisecond).String())
			a.registered = false
			a.register(ctx)
			return
		}
		ctx.Request(a.hub, &workerpb.Heartbeat{Worker: a.cfg.Name, Incarnation: a.cfg.Incarnation})
		a.arm(ctx, a.heartbeat)
	case *actor.Stopping:
		a.disarm()
	}
}

// register sends a registration and arms the next attempt, backing off.
func (a *workerActor) register(ctx actor.Context) {
	if a.everJoined {
		if a.cfg.Reset != nil {
			a.cfg.Reset()
		}
		a.everJoined = false
		a.generation++
	}
	ctx.Request(a.hub, &workerpb.Register{Worker: a.cfg.Name, Incarnation: a.cfg.Incarnation, Boards: a.cfg.Boards, Generation: a.generation})
	a.arm(ctx, a.backoff)
	a.backoff = min(2*a.backoff, a.cfg.MaxBackoff)
}

func (a *workerActor) arm(ctx actor.Context, d time.Duration) {
	a.disarm()
	a.gen++
	gen, self, root := a.gen, ctx.Self(), ctx.ActorSystem().Root
	a.due = a.cfg.Clock.Now().Add(d)
	a.stop = a.cfg.Clock.AfterFunc(d, func() { root.Send(self, &workerTick{gen: gen}) })
}

func (a *workerActor) disarm() {
	if a.stop != nil {
		a.stop()
		a.stop = nil
	}
}
