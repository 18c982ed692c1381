package workers

import (
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/labca"
	"github.com/troupe-lab/troupe/workers/workerpb"
)

// HubName is the name of the hub actor on the server: a worker reaches it
// at PID{Address: the server's --workers address, Id: HubName}.
const HubName = "workers"

// Defaults of the hub's timing.
const (
	DefaultHeartbeat = time.Second
	DefaultLostAfter = 5 * time.Second
)

// maxBoards bounds the boards one worker may register.
const maxBoards = 10000

// HubConfig tunes the hub.
type HubConfig struct {
	Clock     actors.Clock // nil: the wall clock
	Logger    *slog.Logger
	Heartbeat time.Duration // how often workers send heartbeats (0: DefaultHeartbeat)
	LostAfter time.Duration // a worker silent this long is lost (0: DefaultLostAfter)
	// Traffic is when each worker's messages last arrived (any message,
	// recorded by the transport, read on Clock): a worker whose messages
	// flow is not silent though its heartbeats are late. Nil: heartbeats
	// only.
	Traffic *Traffic
	// Joined is told a worker's boards, and the address of its boards
	// actor (BoardsName), each time it registers. Called from the hub
	// actor; must not block. Nil: none.
	Joined func(worker string, boards *actor.PID, bs []*workerpb.Board)
	// Taken are board names no worker may register (the server's own).
	Taken []string
	// Lost is told when a registered worker falls silent. Called from the
	// hub actor; must not block. Nil: none.
	Lost func(worker string)
}

// WorkerStatus is one worker as the hub knows it.
type WorkerStatus struct {
	Name      string    `json:"name"`
	Connected bool      `json:"connected"`
	Address   string    `json:"address"`
	Boards    []string  `json:"boards"`
	LastSeen  time.Time `json:"last_seen"`
	Joined    time.Time `json:"joined"`
}

// Hub is the server's end of the workers: it takes registrations and
// heartbeats and notices workers that fall silent.
type Hub struct {
	system *actor.ActorSystem
	pid    *actor.PID
}

// StartHub spawns the hub actor, named HubName, in system.
func StartHub(system *actor.ActorSystem, cfg HubConfig) (*Hub, error) {
	if cfg.Clock == nil {
		cfg.Clock = actors.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.LostAfter <= 0 {
		cfg.LostAfter = DefaultLostAfter
	}
	pid, err := system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
		return &hubActor{cfg: cfg, workers: map[string]*workerState{}, owner: map[string]string{}}
	}), HubName)
	if err != nil {
		return nil, fmt.Errorf("workers hub: %w", err)
	}
	return &Hub{system: system, pid: pid}, nil
}

// Workers lists the workers the hub knows, by name.
func (h *Hub) Workers() ([]WorkerStatus, error) {
	res, err := h.system.Root.RequestFuture(h.pid, &workersQuery{}, 10*time.Second).Result()
	if err != nil {
		return nil, fmt.Errorf("workers: %w", err)
	}
	ws, _ := res.([]WorkerStatus)
	return ws, nil
}

// Stop stops the hub actor.
func (h *Hub) Stop() error { return h.system.Root.StopFuture(h.pid).Wait() }

type workersQuery struct{}

type hubTick struct{}

type workerState struct {
	incarnation string
	generation  uint64
	pid         *actor.PID
	boards      []string
	connected   bool
	lastSeen    time.Time
	joined      time.Time
}

type hubActor struct {
	cfg      HubConfig
	workers  map[string]*workerState
	owner    map[string]string // board → worker
	stop     func() bool
	lastTick time.Time // when the last tick came
	graced   bool      // the last tick came late and judged no one
}

func (a *hubActor) Receive(ctx actor.Context) {
	now := a.cfg.Clock.Now()
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.lastTick = now
		a.arm(ctx)
	case *workerpb.Register:
		ctx.Respond(a.register(ctx, m, now))
	case *workerpb.Heartbeat:
		w := a.workers[m.Worker]
		known := w != nil && w.connected && w.incarnation == m.Incarnation
		if known {
			w.lastSeen = now
		}
		ctx.Respond(&workerpb.HeartbeatAck{Known: known})
	case *hubTick:
		gap := now.Sub(a.lastTick)
		a.lastTick = now
		if gap > 2*a.cfg.Heartbeat && !a.graced {
			// The hub itself was held up (a starved host): what the
			// workers sent meanwhile may still be on its way in. The next
			// tick judges.
			a.graced = true
			a.cfg.Logger.Debug("hub tick late: judging at the next", "gap", gap.String())
		} else {
			a.graced = false
			a.check(now)
		}
		a.arm(ctx)
	case *workersQuery:
		ctx.Respond(a.list())
	case *actor.Stopping:
		if a.stop != nil {
			a.stop()
		}
	}
}

func (a *hubActor) arm(ctx actor.Context) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.stop = a.cfg.Clock.AfterFunc(a.cfg.Heartbeat, func() { root.Send(self, &hubTick{}) })
}

// register takes a worker's boards, or says why not.
func (a *hubActor) register(ctx actor.Context, m *workerpb.Register, now time.Time) *workerpb.Registered {
	refuse := func(format string, args ...interface{}) *workerpb.Registered {
		err := fmt.Sprintf(format, args...)
		a.cfg.Logger.Warn("worker registration refused", "worker", m.Worker, "err", err)
		return &workerpb.Registered{Error: err}
	}
	if err := labca.CheckName(m.Worker); err != nil {
		return refuse("%v", err)
	}
	if len(m.Boards) > maxBoards {
		return refuse("%d boards: at most %d per worker", len(m.Boards), maxBoards)
	}
	names := make([]string, 0, len(m.Boards))
	for _, b := range m.Boards {
		if b.Name == "" {
			return refuse("a board without a name")
		}
		if slices.Contains(names, b.Name) {
			return refuse("board %s listed twice", b.Name)
		}
		if slices.Contains(a.cfg.Taken, b.Name) {
			return refuse("board %s belongs to the server's own lab", b.Name)
		}
		if o, ok := a.owner[b.Name]; ok && o != m.Worker {
			return refuse("board %s belongs to worker %s", b.Name, o)
		}
		names = append(names, b.Name)
	}
	w := a.workers[m.Worker]
	if w != nil && w.connected && w.incarnation == m.Incarnation && w.generation == m.Generation {
		// A retry of the registration it has: nothing changed.
		return &workerpb.Registered{HeartbeatMs: a.cfg.Heartbeat.Milliseconds()}
	}
	if w != nil {
		for _, b := range w.boards {
			delete(a.owner, b)
		}
		if w.connected && a.cfg.Lost != nil {
			// A worker registers again only after it released its boards
			// (the server restarted, forgot it, or a partition): what ran
			// on them is lost, and must not be waited for or run twice.
			a.cfg.Logger.Warn("worker registered again: its running nodes are lost", "worker", m.Worker)
			a.cfg.Lost(m.Worker)
		}
	}
	for _, b := range names {
		a.owner[b] = m.Worker
	}
	sender := ctx.Sender()
	a.workers[m.Worker] = &workerState{incarnation: m.Incarnation, generation: m.Generation, pid: sender, boards: names, connected: true, lastSeen: now, joined: now}
	addr := ""
	if sender != nil {
		addr = sender.Address
	}
	a.cfg.Logger.Info("worker joined", "worker", m.Worker, "boards", len(names), "address", addr)
	if a.cfg.Joined != nil && sender != nil {
		a.cfg.Joined(m.Worker, actor.NewPID(sender.Address, BoardsName), m.Boards)
	}
	return &workerpb.Registered{HeartbeatMs: a.cfg.Heartbeat.Milliseconds()}
}

// check declares lost every connected worker silent for LostAfter.
func (a *hubActor) check(now time.Time) {
	for _, name := range a.sorted() {
		w := a.workers[name]
		if !w.connected {
			continue
		}
		last := w.lastSeen
		if t := a.cfg.Traffic.Last(name); t.After(last) {
			last = t
		}
		if now.Sub(last) >= a.cfg.LostAfter {
			w.connected = false
			a.cfg.Logger.Warn("worker lost", "worker", name, "silent", now.Sub(last).Round(time.Millisecond).String(),
				"last_heartbeat", now.Sub(w.lastSeen).Round(time.Millisecond).String())
			if a.cfg.Lost != nil {
				a.cfg.Lost(name)
			}
		}
	}
}

func (a *hubActor) sorted() []string {
	names := make([]string, 0, len(a.workers))
	for n := range a.workers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (a *hubActor) list() []WorkerStatus {
	out := []WorkerStatus{}
	for _, n := range a.sorted() {
		w := a.workers[n]
		st := WorkerStatus{Name: n, Connected: w.connected, Boards: slices.Clone(w.boards), LastSeen: w.lastSeen, Joined: w.joined}
		if w.pid != nil {
			st.Address = w.pid.Address
		}
		out = append(out, st)
	}
	return out
}
