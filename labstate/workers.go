package labstate

import (
	"slices"
	"time"

	"github.com/troupe-lab/troupe/scheduler"
)

// BoardsJoined is a worker that (re)registered with its boards: they join
// the lab (a board known before comes back online, keeping its health and
// failure count). Boards the worker had and no longer lists go offline.
type BoardsJoined struct {
	Now    time.Time
	Worker string
	Boards []scheduler.Board // Health "": as Config.Boards
}

// WorkerLost is a worker that fell silent: its boards go offline (not
// placed, not hopeless, never counted toward BadAfter) and the nodes of
// running jobs on them are lost (LoseNodes).
type WorkerLost struct {
	Now    time.Time
	Worker string
}

func (BoardsJoined) event() {}
func (WorkerLost) event()   {}

// LoseNodes tells a running job (or health check) that the nodes on these
// boards are gone with their worker: they end incomplete with Reason (an
// infrastructure error that counts against no board); the job is retried
// on other boards within the lab's retries.
type LoseNodes struct {
	ID     string
	Boards []string
	Reason string
}

// ConnectionChanged is a board whose worker connected (Offline false) or
// was lost (Offline true).
type ConnectionChanged struct {
	Board, Worker string
	Offline       bool
}

func (LoseNodes) effect()         {}
func (ConnectionChanged) effect() {}

// offlineHold is how far ahead an offline board looks reserved to the
// scheduler (re-made at every plan, so it never runs out).
const offlineHold = 24 * time.Hour

func (m *Machine) boardsJoined(e BoardsJoined) {
	listed := map[string]bool{}
	for _, b := range e.Boards {
		listed[b.Name] = true
		i, ok := m.index[b.Name]
		if ok && m.boards[i].Worker == "" {
			continue // the lab file's own board (the hub refuses it)
		}
		if !ok {
			b.Worker = e.Worker
			m.addBoard(b)
			m.emit(ConnectionChanged{Board: b.Name, Worker: e.Worker})
			continue
		}
		m.boards[i].DeviceType, m.boards[i].Tags = b.DeviceType, b.Tags
		m.feasible = nil
		m.boards[i].Worker = e.Worker
		if m.offline[b.Name] {
			delete(m.offline, b.Name)
			m.emit(ConnectionChanged{Board: b.Name, Worker: e.Worker})
		}
	}
	for _, b := range m.boards {
		if b.Worker == e.Worker && !listed[b.Name] && !m.offline[b.Name] {
			m.offline[b.Name] = true
			m.emit(ConnectionChanged{Board: b.Name, Worker: e.Worker, Offline: true})
		}
	}
	m.plan(e.Now)
}

func (m *Machine) workerLost(e WorkerLost) {
	var lost []string
	for _, b := range m.boards {
		if b.Worker == e.Worker && !m.offline[b.Name] {
			m.offline[b.Name] = true
			lost = append(lost, b.Name)
			m.emit(ConnectionChanged{Board: b.Name, Worker: e.Worker, Offline: true})
		}
	}
	ids := make([]string, 0, len(m.running))
	for id := range m.running {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		r := m.running[id]
		var gone []string
		for _, b := range r.boards {
			if slices.Contains(lost, b) {
				gone = append(gone, b)
			}
		}
		if len(gone) == 0 {
			continue
		}
		r.lost = append(r.lost, gone...)
		m.emit(LoseNodes{ID: id, Boards: gone, Reason: "worker " + e.Worker + " lost"})
	}
	m.plan(e.Now)
}

// planView is the boards as the scheduler sees them: an offline board
// looks reserved by its worker, so nothing is placed on it and "why
// waiting" names the worker.
func (m *Machine) planView(now time.Time) []scheduler.Board {
	if len(m.offline) == 0 {
		return m.boards
	}
	view := slices.Clone(m.boards)
	for i, b := range view {
		if m.offline[b.Name] {
			view[i].ReservedBy = "worker " + b.Worker + " (offline)"
			view[i].ReservedUntil = now.Add(offlineHold)
		}
	}
	return view
}
