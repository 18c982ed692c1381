package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/hardware"
	"github.com/troupe-lab/troupe/hardware/power"
	"github.com/troupe-lab/troupe/lab"
)

// Bounds of the operator commands.
const (
	// maxReservation is the longest a board may be reserved at once.
	maxReservation = 7 * 24 * time.Hour
	// defaultReservation is a reservation's length when none is asked.
	defaultReservation = time.Hour
	// opPowerTimeout bounds one power command (switch, read-back, cycle delay).
	opPowerTimeout = 5 * time.Minute
)

// Reservation is a board's state as the operator commands answer it.
type Reservation struct {
	Name          string    `json:"name"`
	ReservedBy    string    `json:"reserved_by"`             // "" when not reserved
	ReservedUntil time.Time `json:"reserved_until,omitzero"` // zero when not reserved
	Job           string    `json:"job"`                     // the job running on it, or ""
	Power         string    `json:"power,omitempty"`         // "on" or "off", from a power command
}

// opsRoutes registers the operator commands: reserve, release, power.
// All are for admins.
func (s *Server) opsRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/devices/{name}/reserve", s.allow(Admin, s.reserve))
	mux.HandleFunc("POST /api/v1/devices/{name}/release", s.allow(Admin, s.release))
	mux.HandleFunc("POST /api/v1/devices/{name}/power", s.allow(Admin, s.power))
	mux.HandleFunc("GET /api/v1/devices/{name}/console", s.allow(Admin, s.console))
}

// consoleMessage bounds one message typed into a board's console.
const consoleMessage = 4096

// console bridges a WebSocket to the console of a board the caller holds
// (reserved by them, no job on it): binary messages both ways, the board's
// bytes as they come. While a job runs on the board its console is the
// job's: 409 names the job (its stream shows the console, read-only).
func (s *Server) console(w http.ResponseWriter, r *http.Request, c caller) {
	name := r.PathValue("name")
	b, ok := s.board(w, name, false)
	if !ok {
		return
	}
	if b.Hardware == nil && b.Backend != workerBackend {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("board %s: not a hardware board (backend %s)", name, b.Backend))
		return
	}
	if !s.heldBy(w, name, c, ": its console is the job's (read-only: the job's stream)") {
		return
	}
	var con io.ReadWriteCloser
	var err error
	if b.Backend == workerBackend {
		con, err = s.lab.WorkerConsole(name)
	} else {
		con, err = hardware.OpenConsole(b, s.log)
	}
	if err != nil {
		writeError(w, opStatus(err), err.Error())
		return
	}
	defer con.Close()
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	defer conn.Close()
	conn.SetReadLimit(consoleMessage)
	s.log.Info("device console attached", "device", name, "by", c.name)
	out := make(chan struct{})
	go func() {
		defer close(out)
		buf := make([]byte, 4096)
		for {
			n, err := con.Read(buf)
			if n > 0 {
				_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if conn.WriteMessage(websocket.BinaryMessage, buf[:n]) != nil {
					return
				}
			}
			if err != nil {
				msg := "console closed"
				if !errors.Is(err, io.EOF) {
					msg = err.Error()
				}
				_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, truncate(msg, 120)), time.Now().Add(time.Second))
				_ = conn.Close()
				return
			}
		}
	}()
	for {
		_, p, err := conn.ReadMessage()
		if err != nil {
			break
		}
		if _, err := con.Write(p); err != nil {
			break
		}
	}
	_ = con.Close()
	<-out
	s.log.Info("device console detached", "device", name, "by", c.name)
}

// truncate cuts s to n bytes at most.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// workerBackend is the backend of a worker's board as the server sees
// it: its worker has its lab entry.
const workerBackend = "worker"

// board is the lab's board called name (a worker's: backend
// workerBackend), or a 404 written. A worker's board whose worker is
// lost is a 503 naming the worker, unless offline is allowed.
func (s *Server) board(w http.ResponseWriter, name string, offline bool) (lab.Board, bool) {
	for _, b := range s.labDef.Boards {
		if b.Name == name {
			return b, true
		}
	}
	bs, err := s.lab.Boards()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return lab.Board{}, false
	}
	for _, b := range bs {
		if b.Name != name || b.Worker == "" {
			continue
		}
		if b.Offline && !offline {
			writeError(w, http.StatusServiceUnavailable, (&actors.WorkerLostError{Board: name, Worker: b.Worker}).Error())
			return lab.Board{}, false
		}
		return lab.Board{Name: name, DeviceType: b.DeviceType, Backend: workerBackend}, true
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no device %q", name))
	return lab.Board{}, false
}

// opStatus is the HTTP status of a failed operator command: the board's
// worker refused it (400), is lost (503), or the board failed (502).
func opStatus(err error) int {
	var lost *actors.WorkerLostError
	switch {
	case errors.Is(err, actors.ErrRefused):
		return http.StatusBadRequest
	case errors.As(err, &lost):
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway
}

// reservation is the current reservation state of board name.
func (s *Server) reservation(name string) (Reservation, error) {
	bs, err := s.lab.Boards()
	if err != nil {
		return Reservation{}, err
	}
	for _, b := range bs {
		if b.Name == name {
			return Reservation{Name: name, ReservedBy: b.ReservedBy, ReservedUntil: b.ReservedUntil, Job: b.Job}, nil
		}
	}
	return Reservation{}, fmt.Errorf("no device %q", name)
}

// decodeOp reads a small JSON body into v (an empty body leaves v as it is).
func decodeOp(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("body: %v", err))
		return false
	}
	return true
}

func (s *Server) reserve(w http.ResponseWriter, r *http.Request, c caller) {
	name := r.PathValue("name")
	if _, ok := s.board(w, name, false); !ok {
		return
	}
	var body struct {
		For string `json:"for"`
	}
	if !decodeOp(w, r, &body) {
		return
	}
	d := defaultReservation
	if body.For != "" {
		var err error
		if d, err = time.ParseDuration(body.For); err != nil || d <= 0 || d > maxReservation {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("for %q: want a duration > 0 and <= %v", body.For, maxReservation))
			return
		}
	}
	if err := s.lab.Reserve(name, c.name, time.Now().Add(d)); err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	s.log.Info("device reserved", "device", name, "by", c.name, "for", d)
	s.answerReservation(w, name, "")
}

func (s *Server) release(w http.ResponseWriter, r *http.Request, c caller) {
	name := r.PathValue("name")
	if _, ok := s.board(w, name, true); !ok {
		return
	}
	if err := s.lab.Release(name); err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	s.log.Info("device released", "device", name, "by", c.name)
	s.answerReservation(w, name, "")
}

// power switches a board or reads its power. Switching needs the board
// reserved by the caller: a job must not find it switched under it.
func (s *Server) power(w http.ResponseWriter, r *http.Request, c caller) {
	name := r.PathValue("name")
	b, ok := s.board(w, name, false)
	if !ok {
		return
	}
	var body struct {
		Action string `json:"action"`
	}
	if !decodeOp(w, r, &body) {
		return
	}
	switch body.Action {
	case "on", "off", "cycle", "status":
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("action %q: want on, off, cycle or status", body.Action))
		return
	}
	var sw power.Switch
	if b.Backend != workerBackend {
		var err error
		if sw, err = hardware.Switch(b); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if body.Action != "status" {
		if !s.heldBy(w, name, c, "") {
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), opPowerTimeout)
	defer cancel()
	if sw == nil {
		on, err := s.lab.WorkerPower(ctx, name, body.Action)
		if err != nil {
			writeError(w, opStatus(err), err.Error())
			return
		}
		s.powered(w, name, body.Action, c, on)
		return
	}
	var err error
	switch body.Action {
	case "on":
		err = sw.On(ctx)
	case "off":
		err = sw.Off(ctx)
	case "cycle":
		if err = sw.Off(ctx); err == nil {
			err = sw.On(ctx)
		}
	}
	var on bool
	if err == nil {
		on, err = sw.State(ctx)
	}
	if err != nil {
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	s.powered(w, name, body.Action, c, on)
}

// powered logs a power command done and answers with the state read back.
func (s *Server) powered(w http.ResponseWriter, name, action string, c caller, on bool) {
	if action != "status" {
		s.log.Info("device power", "device", name, "action", action, "by", c.name)
	}
	s.answerReservation(w, name, map[bool]string{true: "on", false: "off"}[on])
}

func (s *Server) answerReservation(w http.ResponseWriter, name, power string) {
	res, err := s.reservation(name)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	res.Power = power
	writeJSON(w, http.StatusOK, res)
}

// heldBy tells whether caller c holds board name for manual work: reserved
// by c and running no job. If not, it writes the 409 (busy is added to the
// message of a board running a job) or 500 and returns false.
func (s *Server) heldBy(w http.ResponseWriter, name string, c caller, busy string) bool {
	res, err := s.reservation(name)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return false
	}
	switch {
	case res.Job != "":
		writeError(w, http.StatusConflict, fmt.Sprintf("device %s runs job %s%s", name, res.Job, busy))
		return false
	case res.ReservedBy != c.name:
		writeError(w, http.StatusConflict, fmt.Sprintf("device %s is not reserved by %s: reserve it first (troupe reserve %s)", name, c.name, name))
		return false
	}
	return true
}
