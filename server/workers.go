package server

import (
	"net/http"
	"slices"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/workers"
	"github.com/troupe-lab/troupe/workers/workerpb"
)

// WorkerLister lists the workers connected to the server (workers.Hub).
type WorkerLister interface {
	Workers() ([]workers.WorkerStatus, error)
}

// WithWorkers serves GET /api/v1/workers (viewers) from hub, and
// everything else from the server's own handler.
func (s *Server) WithWorkers(hub WorkerLister) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/workers", s.allow(Viewer, func(w http.ResponseWriter, _ *http.Request, _ caller) {
		ws, err := hub.Workers()
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, ws)
	}))
	mux.Handle("/", s.Handler())
	return mux
}

// WorkerJoined adds a worker's boards to the lab (workers.HubConfig.Joined).
// A board's stored health (set by hand, or by its failures, before a
// server restart) wins over its worker's lab file, as for the server's own.
func (s *Server) WorkerJoined(worker string, boards *actor.PID, bs []*workerpb.Board) {
	stored, err := s.store.Health()
	if err != nil {
		s.log.Error("stored health of a worker's boards", "worker", worker, "err", err)
	}
	l := make([]lab.Board, 0, len(bs))
	for _, b := range bs {
		h := b.Health
		if sh, ok := stored[b.Name]; ok {
			h = sh
		}
		l = append(l, lab.Board{Name: b.Name, DeviceType: b.DeviceType, Tags: b.Tags, Health: h})
	}
	s.lab.BoardsJoined(worker, boards, l)
}

// WorkerLost takes a worker's boards offline (workers.HubConfig.Lost).
func (s *Server) WorkerLost(worker string) { s.lab.WorkerLost(worker) }

// workerBoard tells whether a worker has joined with board name.
func (s *Server) workerBoard(name string) bool {
	bs, err := s.lab.Boards()
	if err != nil {
		return false
	}
	return slices.ContainsFunc(bs, func(b actors.BoardStatus) bool { return b.Name == name && b.Worker != "" })
}

// LabBoards are the names of the server's own boards (its lab file): no
// worker may register one (workers.HubConfig.Taken).
func (s *Server) LabBoards() []string {
	names := make([]string, 0, len(s.labDef.Boards))
	for _, b := range s.labDef.Boards {
		names = append(names, b.Name)
	}
	return names
}

// checkLab is the lab a submitted job must fit: nil with workers, whose
// boards may join later (the lab explains why a job waits).
func (s *Server) checkLab() *lab.Lab {
	if s.cfg.Workers {
		return nil
	}
	return s.labDef
}

// workerDevices adds the workers' boards, with their worker and its
// connection, to the lab file's.
func (s *Server) workerDevices(ds []Device, bs []actors.BoardStatus) []Device {
	for _, b := range bs {
		if b.Worker == "" || slices.ContainsFunc(ds, func(d Device) bool { return d.Name == b.Name }) {
			continue
		}
		conn := "online"
		if b.Offline {
			conn = "offline"
		}
		tags := b.Tags
		if tags == nil {
			tags = []string{}
		}
		ds = append(ds, Device{Name: b.Name, DeviceType: b.DeviceType, Tags: tags, Backend: "worker", Health: string(b.Health),
			Job: b.Job, ReservedBy: b.ReservedBy, ReservedUntil: b.ReservedUntil, Worker: b.Worker, Connection: conn})
	}
	return ds
}
