package server

import (
	"net/http"

	"github.com/troupe-lab/troupe/workers"
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
