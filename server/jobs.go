package server

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/lava"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/scheduler"
	"github.com/troupe-lab/troupe/store"
)

// MaxJobSize is the largest job file the server takes.
const MaxJobSize = 1 << 20

// liveJob is a job as the server holds it. Its fields are guarded by
// Server.mu, but for rec's ID, Name, File, Format and Source, which never
// change.
type liveJob struct {
	rec     *store.Job
	dir     string
	book    *logbook.Book          // while queued or running
	explain *scheduler.Explanation // latest, while queued
	nodes   map[string]*report.Node
	final   bool          // results stored and log closed
	changed chan struct{} // closed and replaced at every status change
}

// Summary is a job in lists and status frames.
type Summary struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Status    string         `json:"status"`
	Error     string         `json:"error"`
	Priority  int            `json:"priority"`
	Submitter string         `json:"submitter,omitempty"`
	Submitted time.Time      `json:"submitted"`
	Started   *time.Time     `json:"started"`
	Ended     *time.Time     `json:"ended"`
	Roles     map[string]int `json:"roles"`
}

// Job is a job in full.
type Job struct {
	Summary
	Nodes    []report.Node    `json:"nodes"`
	Tests    []report.Test    `json:"tests"`
	Attempts []report.Attempt `json:"attempts"`
}

func (lj *liveJob) summary() Summary {
	r := lj.rec
	return Summary{ID: r.ID, Name: r.Name, Status: r.Status, Error: r.Error, Priority: r.Priority,
		Submitter: r.Submitter, Submitted: r.Submitted, Started: r.Started, Ended: r.Ended, Roles: r.Roles}
}

func (lj *liveJob) full() Job {
	j := Job{Summary: lj.summary(), Nodes: []report.Node{}, Tests: []report.Test{}, Attempts: lj.rec.Attempts}
	if j.Attempts == nil {
		j.Attempts = []report.Attempt{}
	}
	if res := lj.rec.Results; res != nil {
		j.Nodes = append(j.Nodes, res.Nodes...)
		j.Tests = append(j.Tests, res.Tests...)
		return j
	}
	for _, name := range slices.Sorted(maps.Keys(lj.nodes)) {
		j.Nodes = append(j.Nodes, *lj.nodes[name])
	}
	return j
}

// parseJob parses a submitted job file: LAVA YAML when format is "lava",
// else troupe TOML. Its images resolve under the images root only.
func parseJob(images, file, format string, data []byte) (*jobs.Job, error) {
	parse := jobs.Parse
	if format == "lava" {
		parse = lava.Import
	}
	j, err := parse(file, data)
	if err != nil {
		return nil, err
	}
	if err := j.ConfineImages(images); err != nil {
		return nil, err
	}
	return j, nil
}

var fileName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// submit is POST /api/v1/jobs.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, c caller) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxJobSize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("job file larger than %d bytes", MaxJobSize))
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
	j, err := checkJob(s.labDef, s.cfg.Images, file, format, data)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rec := &store.Job{Name: j.Name, Status: store.StatusQueued, Priority: j.Priority, Roles: map[string]int{},
		Format: format, File: file, Source: string(data), Submitter: c.name, Submitted: time.Now().UTC()}
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
	if err := s.store.Add(rec); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
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

// checkJob parses a submitted job and checks that the lab can run it.
func checkJob(l *lab.Lab, images, file, format string, data []byte) (*jobs.Job, error) {
	j, err := parseJob(images, file, format, data)
	if err != nil {
		return nil, err
	}
	if err := l.Check(j); err != nil {
		return nil, err
	}
	return j, nil
}

// insertOrdered adds id to s.order, which stays sorted by ID (submissions
// stored concurrently may arrive here out of order). s.mu must be held.
func (s *Server) insertOrdered(id string) {
	n := idNumber(id)
	i, _ := slices.BinarySearchFunc(s.order, n, func(x string, n uint64) int { return cmp.Compare(idNumber(x), n) })
	s.order = slices.Insert(s.order, i, id)
}

func idNumber(id string) uint64 {
	n, _ := strconv.ParseUint(id, 10, 64)
	return n
}

// enqueue hands a stored queued job to the lab, parsing its source again.
func (s *Server) enqueue(lj *liveJob) error {
	j, err := parseJob(s.cfg.Images, lj.rec.File, lj.rec.Format, []byte(lj.rec.Source))
	if err != nil {
		s.fail(lj, fmt.Sprintf("job file no longer valid: %v", err))
		return err
	}
	return s.submitParsed(lj, j)
}

func (s *Server) submitParsed(lj *liveJob, j *jobs.Job) error {
	book, err := logbook.New(lj.dir, nil)
	if err != nil {
		s.fail(lj, fmt.Sprintf("logs: %v", err))
		return err
	}
	s.mu.Lock()
	lj.book = book
	attempts := slices.Clone(lj.rec.Attempts)
	s.mu.Unlock()
	id := lj.rec.ID
	s.lab.Submit(actors.Submission{
		ID: id, Job: j, Book: book, Attempts: attempts,
		Waiting: func(e scheduler.Explanation) {
			s.mu.Lock()
			lj.explain = &e
			s.mu.Unlock()
		},
		Events: func(e actors.Event) {
			if err := recordAction(lj.dir, e); err != nil {
				s.log.Error("record action", "job", id, "err", err)
			}
			s.phase(lj, e)
		},
		Started: func(boards map[string]string) { s.started(lj, boards) },
		Done:    func(res *report.Results) { s.done(lj, res) },
	})
	return nil
}

// fail ends a job that cannot be run.
func (s *Server) fail(lj *liveJob, msg string) {
	s.done(lj, &report.Results{Job: report.Job{Name: lj.rec.Name, Status: report.StatusIncomplete, Class: report.JobError, Error: msg}})
}

func (s *Server) phase(lj *liveJob, e actors.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lj.nodes == nil || store.Ended(lj.rec.Status) {
		return
	}
	n, ok := lj.nodes[e.Node]
	if !ok {
		return
	}
	n.Status = e.Phase
	n.Error = e.Detail
}

func (s *Server) started(lj *liveJob, boards map[string]string) {
	now := time.Now().UTC()
	s.mu.Lock()
	lj.rec.Status, lj.rec.Started, lj.rec.Boards, lj.explain = store.StatusRunning, &now, boards, nil
	lj.nodes = map[string]*report.Node{}
	for node, b := range boards {
		role := node[:strings.LastIndexByte(node, '-')]
		lj.nodes[node] = &report.Node{Name: node, Role: role, Board: b, Status: store.StatusRunning}
	}
	rec := *lj.rec
	s.mu.Unlock()
	s.later(func() {
		if err := s.store.Put(&rec); err != nil {
			s.log.Error("store job start", "job", rec.ID, "err", err)
		}
	})
	s.notify(lj)
}

// done records a job's final results: results.json and junit.xml in its
// directory, the record in the store, and the end of its streams.
func (s *Server) done(lj *liveJob, res *report.Results) {
	now := time.Now().UTC()
	s.later(func() {
		// Files, then the store, then what the API shows: whoever sees the
		// job ended finds its results, and so does the next server.
		if err := report.Write(lj.dir, res); err != nil {
			s.log.Error("write results", "job", lj.rec.ID, "err", err)
		}
		s.mu.Lock()
		rec := *lj.rec
		s.mu.Unlock()
		rec.Status, rec.Error, rec.Ended, rec.Results, rec.Attempts = res.Job.Status, res.Job.Error, &now, res, res.Job.Attempts
		if err := s.store.Put(&rec); err != nil {
			s.log.Error("store job results", "job", rec.ID, "err", err)
		}
		s.mu.Lock()
		// Only what changed: ID, name and source are read without the lock.
		lj.rec.Status, lj.rec.Error, lj.rec.Ended, lj.rec.Results, lj.rec.Attempts = rec.Status, rec.Error, rec.Ended, rec.Results, rec.Attempts
		lj.explain = nil
		book := lj.book
		s.mu.Unlock()
		if book != nil {
			if err := book.Close(); err != nil {
				s.log.Error("close logs", "job", rec.ID, "err", err)
			}
		}
		s.mu.Lock()
		lj.final = true
		s.mu.Unlock()
		s.log.Info("job ended", "job", rec.ID, "status", rec.Status, "error", rec.Error)
		s.notify(lj)
	})
}

// notify wakes the streams of lj and tells the event subscribers.
func (s *Server) notify(lj *liveJob) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(lj.changed)
	lj.changed = make(chan struct{})
	ev := &liveEvent{Type: "job", Job: lj.summary()}
	for ch := range s.subs {
		select {
		case ch <- ev:
		default: // too slow: dropped, it reconnects
			delete(s.subs, ch)
			close(ch)
		}
	}
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
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, lj.rec.Source)
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
	writeJSON(w, http.StatusOK, s.deviceList())
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
	if !slices.ContainsFunc(s.labDef.Boards, func(b lab.Board) bool { return b.Name == name }) {
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
	for _, d := range s.deviceList() {
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
