package server

// The HTTP handlers of the jobs and devices API.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/scheduler"
	"github.com/troupe-lab/troupe/store"
)

// MaxJobSize is the largest job file the server takes.
const MaxJobSize = 1 << 20

var fileName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// idempotencyKey is an Idempotency-Key header: absent, or printable ASCII.
var idempotencyKey = regexp.MustCompile(`^[\x21-\x7e]{0,255}$`)

// submit is POST /api/v1/jobs.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, c caller) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxJobSize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("job file larger than %d bytes", MaxJobSize))
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			writeError(w, http.StatusRequestTimeout, fmt.Sprintf("job file not received within %s", s.cfg.Limits.BodyTimeout))
			return
		}
		writeError(w, http.StatusBadRequest, fmt.Sprintf("read job file: %v", err))
		return
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "toml"
		if strings.Contains(r.Header.Get("Content-Type"), "yaml") {
			format = "lava"
		}
	}
	if format != "toml" && format != "lava" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("format %q: want toml or lava", format))
		return
	}
	file := r.URL.Query().Get("file")
	if file == "" {
		file = map[string]string{"toml": "job.toml", "lava": "job.yaml"}[format]
	}
	if len(file) > 4096 || strings.ContainsRune(file, 0) {
		writeError(w, http.StatusBadRequest, "file: want the job file's path")
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if !idempotencyKey.MatchString(key) {
		writeError(w, http.StatusBadRequest, "Idempotency-Key: want 1 to 255 printable ASCII characters")
		return
	}
	j, err := checkJob(s.checkLab(), s.cfg.Images, file, format, data, s.cfg.LAVAMirrors...)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rec := &store.Job{Name: j.Name, Status: store.StatusQueued, Priority: j.Priority, Roles: map[string]int{},
		Format: format, File: file, Source: string(data), Submitter: c.name, Key: key, Submitted: s.now().UTC()}
	for _, role := range j.Roles {
		rec.Roles[role.Name] = role.Count
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		writeError(w, http.StatusServiceUnavailable, "the server is shutting down")
		return
	}
	// Stored (fsynced) before it is acknowledged: a 201 is never lost. The
	// fsync is done outside the lock, so jobs and streams go on meanwhile.
	// IDs whose folder exists (a store replaced under old job folders)
	// are skipped: a new job never appends to an old job's logs.
	first, err := s.store.Add(rec, func(id string) bool {
		_, err := os.Lstat(s.jobDir(id))
		return !errors.Is(err, os.ErrNotExist)
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if first != "" {
		s.log.Info("job submitted again: the first one stands", "job", first, "by", c.name)
		writeJSON(w, http.StatusOK, map[string]string{"id": first})
		return
	}
	lj := &liveJob{rec: rec, dir: s.jobDir(rec.ID), changed: make(chan struct{})}
	s.mu.Lock()
	s.jobs[rec.ID] = lj
	s.insertOrdered(rec.ID)
	s.mu.Unlock()
	s.log.Info("job submitted", "job", rec.ID, "name", rec.Name, "by", c.name)
	if err := s.submitParsed(lj, j); err != nil {
		s.log.Error("queue job", "job", rec.ID, "err", err)
	}
	s.notify(lj)
	writeJSON(w, http.StatusCreated, map[string]string{"id": rec.ID})
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) (*liveJob, bool) {
	id := r.PathValue("id")
	s.mu.Lock()
	lj, ok := s.jobs[id]
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no job %q", id))
	}
	return lj, ok
}

// list is GET /api/v1/jobs[?status=a,b].
func (s *Server) list(w http.ResponseWriter, r *http.Request, _ caller) {
	want := map[string]bool{}
	if q := r.URL.Query().Get("status"); q != "" {
		for st := range strings.SplitSeq(q, ",") {
			if !slices.Contains([]string{store.StatusQueued, store.StatusRunning, report.StatusComplete, report.StatusIncomplete, report.StatusCanceled}, st) {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("status %q: want queued, running, complete, incomplete or canceled", st))
				return
			}
			want[st] = true
		}
	}
	s.mu.Lock()
	out := []Summary{}
	for i := len(s.order) - 1; i >= 0; i-- {
		lj := s.jobs[s.order[i]]
		if len(want) == 0 || want[lj.rec.Status] {
			out = append(out, lj.summary())
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) show(w http.ResponseWriter, r *http.Request, _ caller) {
	if lj, ok := s.get(w, r); ok {
		s.mu.Lock()
		j := lj.full()
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, j)
	}
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request, c caller) {
	lj, ok := s.get(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	sum := lj.summary()
	s.mu.Unlock()
	if c.role != Admin && sum.Submitter != c.name {
		writeError(w, http.StatusForbidden, fmt.Sprintf("job %s was submitted by %q: only its submitter or an admin may cancel it", sum.ID, sum.Submitter))
		return
	}
	if store.Ended(sum.Status) {
		writeError(w, http.StatusConflict, fmt.Sprintf("job %s has already ended (%s)", sum.ID, sum.Status))
		return
	}
	s.lab.Cancel(sum.ID, fmt.Sprintf("canceled by %s", c.name))
	s.log.Info("job cancel", "job", sum.ID, "by", c.name)
	writeJSON(w, http.StatusAccepted, sum)
}

func (s *Server) explain(w http.ResponseWriter, r *http.Request, _ caller) {
	lj, ok := s.get(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	e, status := lj.explain, lj.rec.Status
	s.mu.Unlock()
	if status != store.StatusQueued {
		writeJSON(w, http.StatusOK, map[string]any{"waiting": false, "status": status})
		return
	}
	if e == nil { // queued, not yet planned
		writeJSON(w, http.StatusOK, map[string]any{"waiting": true, "status": status, "summary": "not yet planned"})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Waiting bool   `json:"waiting"`
		Status  string `json:"status"`
		*scheduler.Explanation
	}{true, status, e})
}

// logs is GET /api/v1/jobs/{id}/logs: the merged log as text, or one
// node's raw console with ?node=.
func (s *Server) logs(w http.ResponseWriter, r *http.Request, _ caller) {
	lj, ok := s.get(w, r)
	if !ok {
		return
	}
	name := logbook.GroupFile
	if node := r.URL.Query().Get("node"); node != "" {
		if !fileName.MatchString(node) || node == "group" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("node %q: not a node name", node))
			return
		}
		name = node + ".log"
	}
	f, err := os.Open(filepath.Join(lj.dir, "logs", name))
	if errors.Is(err, os.ErrNotExist) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		return // nothing logged yet
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.Copy(w, f)
}

func (s *Server) junit(w http.ResponseWriter, r *http.Request, _ caller) {
	s.endedFile(w, r, "junit.xml", "application/xml")
}

func (s *Server) endedFile(w http.ResponseWriter, r *http.Request, name, ctype string) {
	lj, ok := s.get(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	status := lj.rec.Status
	s.mu.Unlock()
	if !store.Ended(status) {
		writeError(w, http.StatusConflict, fmt.Sprintf("job %s is %s: no %s before it ends", lj.rec.ID, status, name))
		return
	}
	data, err := os.ReadFile(filepath.Join(lj.dir, name))
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", ctype)
	_, _ = w.Write(data)
}

func (s *Server) source(w http.ResponseWriter, r *http.Request, _ caller) {
	if lj, ok := s.get(w, r); ok {
		src, err := lj.shownSource()
		if err != nil {
			// Not the source: it would show the secrets.
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, src)
	}
}

// Device is a board as the API shows it.
type Device struct {
	Name       string   `json:"name"`
	DeviceType string   `json:"device_type"`
	Tags       []string `json:"tags"`
	Backend    string   `json:"backend"`
	Health     string   `json:"health"`
	Job        string   `json:"job"`
	// ReservedBy holds the board for manual work until ReservedUntil
	// (troupe reserve); "" and zero when nobody does.
	ReservedBy    string    `json:"reserved_by,omitempty"`
	ReservedUntil time.Time `json:"reserved_until,omitzero"`
	// Worker is the worker the board is on ("" the server's own), and
	// Connection that worker's: "online" or "offline" (lost).
	Worker     string `json:"worker,omitempty"`
	Connection string `json:"connection,omitempty"`
}

func (s *Server) deviceList() []Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	busy := map[string]string{}
	for _, lj := range s.jobs {
		if lj.rec.Status == store.StatusRunning {
			for _, b := range lj.rec.Boards {
				busy[b] = lj.rec.ID
			}
		}
	}
	var ds []Device
	for _, b := range s.labDef.Boards {
		h := s.health[b.Name]
		if h == "" {
			h = "unknown"
		}
		tags := b.Tags
		if tags == nil {
			tags = []string{}
		}
		ds = append(ds, Device{Name: b.Name, DeviceType: b.DeviceType, Tags: tags, Backend: b.Backend, Health: h, Job: busy[b.Name]})
	}
	return ds
}

func (s *Server) devices(w http.ResponseWriter, _ *http.Request, _ caller) {
	ds := s.deviceList()
	// Reservations live in the lab actor: asked outside s.mu.
	bs, err := s.lab.Boards()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	held := map[string]actors.BoardStatus{}
	for _, b := range bs {
		held[b.Name] = b
	}
	for i := range ds {
		b := held[ds[i].Name]
		ds[i].ReservedBy, ds[i].ReservedUntil = b.ReservedBy, b.ReservedUntil
	}
	ds = s.workerDevices(ds, bs)
	writeJSON(w, http.StatusOK, ds)
}

func (s *Server) setHealth(w http.ResponseWriter, r *http.Request, c caller) {
	name := r.PathValue("name")
	var body struct {
		Health string `json:"health"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("body: want {\"health\": \"...\"}: %v", err))
		return
	}
	valid := []string{"good", "bad", "maintenance", "retired"}
	if !slices.Contains(valid, body.Health) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("health %q: want one of %s", body.Health, strings.Join(valid, ", ")))
		return
	}
	if !slices.ContainsFunc(s.labDef.Boards, func(b lab.Board) bool { return b.Name == name }) && !s.workerBoard(name) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no device %q", name))
		return
	}
	// Stored first: the change survives a crash right after the answer.
	if err := s.store.SetHealth(name, body.Health); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.mu.Lock()
	s.health[name] = body.Health
	s.mu.Unlock()
	s.lab.SetHealth(name, scheduler.Health(body.Health))
	s.log.Info("device health set", "device", name, "health", body.Health, "by", c.name)
	ds := s.deviceList()
	if bs, err := s.lab.Boards(); err == nil {
		ds = s.workerDevices(ds, bs)
	}
	for _, d := range ds {
		if d.Name == name {
			writeJSON(w, http.StatusOK, d)
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
