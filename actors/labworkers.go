package actors

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/labstate"
	"github.com/troupe-lab/troupe/scheduler"
)

// BoardsJoined adds a worker's boards to the lab (or brings them back
// online): boards is the PID of the worker's boards actor
// (NewWorkerBoards), which runs them for the jobs placed on them.
func (l *Lab) BoardsJoined(worker string, boards *actor.PID, bs []lab.Board) {
	l.system.Root.Send(l.pid, &boardsJoined{worker: worker, pid: boards, boards: bs})
}

// WorkerLost takes a worker's boards offline; the nodes running on them
// end incomplete ("worker W lost") and their jobs are retried elsewhere.
func (l *Lab) WorkerLost(worker string) {
	l.system.Root.Send(l.pid, &workerLost{worker: worker})
}

type boardsJoined struct {
	worker string
	pid    *actor.PID
	boards []lab.Board
}

type workerLost struct{ worker string }

// workerLink is how the lab reaches a worker's boards.
type workerLink struct {
	pid  *actor.PID
	gone chan struct{} // closed when the worker is lost
}

func (a *labActor) boardsJoined(ctx actor.Context, m *boardsJoined) {
	if a.links == nil {
		a.links, a.boardWorker = map[string]*workerLink{}, map[string]string{}
	}
	link := a.links[m.worker]
	if link == nil || isClosed(link.gone) {
		link = &workerLink{gone: make(chan struct{})}
		a.links[m.worker] = link
	}
	link.pid = m.pid
	ev := labstate.BoardsJoined{Now: a.cfg.Clock.Now(), Worker: m.worker}
	for _, b := range m.boards {
		a.byName[b.Name] = b
		a.boardWorker[b.Name] = m.worker
		ev.Boards = append(ev.Boards, scheduler.Board{Name: b.Name, DeviceType: b.DeviceType, Tags: b.Tags, Health: scheduler.Health(b.Health)})
	}
	a.step(ctx, ev)
}

func (a *labActor) workerLost(ctx actor.Context, m *workerLost) {
	if link := a.links[m.worker]; link != nil && !isClosed(link.gone) {
		close(link.gone)
	}
	a.step(ctx, labstate.WorkerLost{Now: a.cfg.Clock.Now(), Worker: m.worker})
}

// remote fills in the nodes of cfg whose boards are on workers.
func (a *labActor) remote(cfg *Config, boards map[string]string) {
	for node, b := range boards {
		w, ok := a.boardWorker[b]
		if !ok {
			continue
		}
		if cfg.Remote == nil {
			cfg.Remote = map[string]RemoteBoard{}
		}
		link := a.links[w]
		cfg.Remote[node] = RemoteBoard{Worker: w, Boards: link.pid, Gone: link.gone}
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
