// Package server is `troupe serve`: one process that owns a lab (its
// scheduler and actor tree, runner.Service), keeps every job in an embedded
// store (store.Store), and serves the REST API, the live WebSocket streams
// and the web UI. See docs/api.md.
package server

import (
	"github.com/asynkron/protoactor-go/actor"

	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/backend"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/lava"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/runner"
	"github.com/troupe-lab/troupe/store"
	"github.com/troupe-lab/troupe/web"
)

// Config is what a server runs.
type Config struct {
	Lab    *lab.Lab // nil: the built-in lab of BuiltinBoards sim boards
	Data   string   // the store and every job's results and logs
	Images string   // the images root: jobs deploy images from under it only ("": Data/images)
	Tokens []Token  // nil: no auth (the caller binds loopback only)
	Logger *slog.Logger
	// Open makes a board's backend (tests: fault injection). Nil: sim
	// boards are simulated, hardware boards reached for real.
	Open func(node string, b lab.Board, dir string) (actors.Backend, error)
	// Retention: ended jobs beyond the newest Keep, or ended longer than
	// KeepFor ago, are deleted with their folders (0: no such limit).
	Keep    int
	KeepFor time.Duration
	Limits  Limits
	Now     func() time.Time // nil: time.Now
	// LAVAMirrors map URL prefixes of LAVA jobs' test definition
	// repositories and images to local directories (--lava-mirror); the
	// server fetches nothing from the network.
	LAVAMirrors []lava.Mirror
	// Workers: boards join from workers (WorkerJoined); Lab may have no
	// boards of its own. System is the actor system, with protoactor
	// remote started, that the lab runs in (workers.Transport).
	Workers bool
	System  *actor.ActorSystem
}

// Limits bound what one HTTP client can hold of the server.
type Limits struct {
	IdleTimeout       time.Duration // a keep-alive connection with no request is closed
	ReadHeaderTimeout time.Duration // a request's headers must arrive within
	BodyTimeout       time.Duration // a request's body must arrive within
	ConnsPerAddr      int           // open connections (streams included) of one client address
}

// DefaultLimits are the limits of a zero Config.Limits field.
var DefaultLimits = Limits{IdleTimeout: 2 * time.Minute, ReadHeaderTimeout: 10 * time.Second,
	BodyTimeout: 30 * time.Second, ConnsPerAddr: 64}

// BuiltinBoards is the size of the built-in sim lab.
const BuiltinBoards = 8

// stoppedDuringRun is the error of an attempt the server did not see end.
const stoppedDuringRun = "server stopped during the run"

// Server is a running troupe server.
type Server struct {
	cfg    Config
	tokens []Token
	log    *slog.Logger
	store  *store.Store
	lab    *runner.Service
	labDef *lab.Lab

	wake    chan struct{} // capacity 1: work was queued, or the server closed
	workers sync.WaitGroup

	mu     sync.Mutex
	work   []task // store writes of the lab's callbacks, in order
	jobs   map[string]*liveJob
	order  []string          // job IDs, oldest first
	health map[string]string // board → health
	subs   map[chan *liveEvent]struct{}
	closed bool
}

// New opens the store in cfg.Data, powers off boards a previous server
// left on, re-queues the jobs it left queued or running, and puts the lab
// in service.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Lab == nil {
		cfg.Lab = builtinLab()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Limits = withDefaults(cfg.Limits)
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if cfg.Images == "" {
		cfg.Images = filepath.Join(cfg.Data, "images")
		if err := os.MkdirAll(cfg.Images, 0o755); err != nil {
			return nil, fmt.Errorf("images directory: %w", err)
		}
	}
	st, err := store.Open(filepath.Join(cfg.Data, "troupe.db"))
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, tokens: cfg.Tokens, log: cfg.Logger, store: st, labDef: cfg.Lab,
		wake: make(chan struct{}, 1), jobs: map[string]*liveJob{}, health: map[string]string{},
		subs: map[chan *liveEvent]struct{}{}}
	if err := s.start(); err != nil {
		_ = st.Close()
		return nil, err
	}
	return s, nil
}

func withDefaults(l Limits) Limits {
	d := DefaultLimits
	if l.IdleTimeout > 0 {
		d.IdleTimeout = l.IdleTimeout
	}
	if l.ReadHeaderTimeout > 0 {
		d.ReadHeaderTimeout = l.ReadHeaderTimeout
	}
	if l.BodyTimeout > 0 {
		d.BodyTimeout = l.BodyTimeout
	}
	if l.ConnsPerAddr > 0 {
		d.ConnsPerAddr = l.ConnsPerAddr
	}
	return d
}

func (s *Server) now() time.Time { return s.cfg.Now() }

func builtinLab() *lab.Lab {
	l := &lab.Lab{File: "built-in", Retries: lab.DefaultRetries, BadAfter: lab.DefaultBadAfter}
	for i := range BuiltinBoards {
		l.Boards = append(l.Boards, lab.Board{Name: fmt.Sprintf("sim-%d", i), DeviceType: "sim", Backend: lab.Sim})
	}
	return l
}

func (s *Server) start() error {
	stored, err := s.store.Health()
	if err != nil {
		return err
	}
	l := *s.labDef
	l.Boards = slices.Clone(l.Boards)
	for i, b := range l.Boards {
		if h, ok := stored[b.Name]; ok {
			l.Boards[i].Health = h
		}
		h := l.Boards[i].Health
		if _, checked := l.HealthCheck(b.DeviceType); h == "" && !checked {
			h = "good" // as the lab actor decides
		}
		s.health[b.Name] = h
	}
	s.powerOffLeftovers(l.Boards)

	recs, err := s.store.Jobs()
	if err != nil {
		return err
	}
	if err := s.checkJobFolders(); err != nil {
		return err
	}
	var requeue []*liveJob
	for _, rec := range recs {
		lj := &liveJob{rec: rec, dir: s.jobDir(rec.ID), changed: make(chan struct{})}
		if rec.Status == store.StatusRunning {
			if err := s.endAttempt(lj); err != nil {
				return err
			}
		}
		if rec.Status == store.StatusQueued {
			requeue = append(requeue, lj)
		}
		lj.final = store.Ended(rec.Status)
		s.jobs[rec.ID] = lj
		s.order = append(s.order, rec.ID)
	}

	s.prune()
	s.workers.Add(1)
	go s.worker()
	s.lab, err = runner.StartService(&l, runner.ServiceOptions{
		Options: runner.Options{Logger: s.log, Open: s.cfg.Open, HealthChanged: s.healthChanged},
		Out:     filepath.Join(s.cfg.Data, "health-checks"),
		Work:    filepath.Join(s.cfg.Data, "boards"),
		System:  s.cfg.System,
		Workers: s.cfg.Workers,
	})
	if err != nil {
		s.stopWorker()
		return err
	}
	for _, lj := range requeue {
		if err := s.enqueue(lj); err != nil {
			s.log.Error("re-queue job", "job", lj.rec.ID, "err", err)
		}
	}
	if len(requeue) > 0 {
		s.log.Info("re-queued jobs of the previous server", "jobs", len(requeue))
	}
	return nil
}

// endAttempt ends the attempt a previous server left running: it is
// recorded as an attempt stopped with the server, and the job is queued
// again if the lab's retry budget allows, else ends incomplete.
func (s *Server) endAttempt(lj *liveJob) error {
	rec := lj.rec
	rec.Attempts = append(rec.Attempts, report.Attempt{Boards: slices.Sorted(maps.Values(rec.Boards)), Error: stoppedDuringRun})
	logs := filepath.Join(lj.dir, "logs")
	if _, err := os.Stat(logs); err == nil {
		if err := os.Rename(logs, fmt.Sprintf("%s-attempt-%d", logs, len(rec.Attempts))); err != nil {
			return fmt.Errorf("keep logs of job %s: %w", rec.ID, err)
		}
	}
	rec.Boards, rec.Started = nil, nil
	if len(rec.Attempts) <= s.labDef.Retries {
		rec.Status = store.StatusQueued
		s.log.Warn("job was running when the server stopped: queued again", "job", rec.ID)
	} else {
		now := s.now().UTC()
		rec.Status, rec.Error, rec.Ended = report.StatusIncomplete, stoppedDuringRun, &now
		rec.Results = &report.Results{Job: report.Job{Name: rec.Name, Status: report.StatusIncomplete,
			Error: stoppedDuringRun, Class: report.Infrastructure, Attempts: rec.Attempts}}
		if err := report.Write(lj.dir, rec.Results); err != nil {
			s.log.Error("write results", "job", rec.ID, "err", err)
		}
		s.log.Warn("job was running when the server stopped: no retries left", "job", rec.ID)
	}
	return s.store.Put(rec)
}

// powerOffLeftovers powers off every board a previous server may have
// left on (a kill -9 runs no cleanup).
func (s *Server) powerOffLeftovers(boards []lab.Board) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, b := range boards {
		wg.Go(func() {
			if err := backend.PowerOffLeftover(ctx, b, filepath.Join(s.cfg.Data, "boards", b.Name)); err != nil {
				s.log.Warn("power off at start", "board", b.Name, "err", err)
			}
		})
	}
	wg.Wait()
}

func (s *Server) jobDir(id string) string { return filepath.Join(s.cfg.Data, "jobs", id) }

// checkJobFolders refuses a store that never gave a job ID beside job
// folders: the store of those jobs was lost or replaced, and new jobs
// would be mixed with the old ones' files.
func (s *Server) checkJobFolders() error {
	seq, err := s.store.Sequence()
	if err != nil || seq > 0 {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(s.cfg.Data, "jobs"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("job folders: %w", err)
	case len(entries) == 0:
		return nil
	}
	return fmt.Errorf("%w: the store %s is new, but %s holds %d job folders: the store of those jobs was lost or replaced; restore it, or move the jobs folder away",
		store.ErrDamaged, filepath.Join(s.cfg.Data, "troupe.db"), filepath.Join(s.cfg.Data, "jobs"), len(entries))
}

// task is a store write of the lab's callbacks: files writes its files
// (nil: none; the files of the tasks of a batch are written at once, each
// fsynced), then write adds its store writes to the batch, in order, and
// after runs once the batch is committed (err: it is not).
type task struct {
	files func()
	write func(*store.Batch)
	after func(err error)
}

// maxFileWriters bounds the tasks writing their files at once.
const maxFileWriters = 16

// worker runs the store writes of the lab's callbacks off the lab actor,
// in the order they came: the writes queued meanwhile are committed
// together, in one transaction, then each task's after runs. Once the
// server is closed it runs what was queued before and returns.
func (s *Server) worker() {
	defer s.workers.Done()
	var aged <-chan time.Time // jobs age out of KeepFor even when none ends
	if s.cfg.KeepFor > 0 {
		t := time.NewTicker(min(s.cfg.KeepFor/10+time.Second, time.Hour))
		defer t.Stop()
		aged = t.C
	}
	for {
		s.mu.Lock()
		ts, closed := s.work, s.closed
		s.work = nil
		s.mu.Unlock()
		if len(ts) > 0 {
			s.runTasks(ts)
			s.prune()
		}
		switch {
		case len(ts) > 0:
		case closed:
			return
		default:
			select {
			case <-s.wake:
			case <-aged:
				s.prune()
			}
		}
	}
}

// runTasks writes the files of ts side by side (their fsyncs share the
// disk's journal commits), commits their store writes at once, then runs
// their afters.
func (s *Server) runTasks(ts []task) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxFileWriters)
	for _, t := range ts {
		if t.files == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t.files()
		})
	}
	wg.Wait()
	b := &store.Batch{}
	for _, t := range ts {
		t.write(b)
	}
	var err error
	if b.Len() > 0 {
		err = s.store.Commit(b)
	}
	for _, t := range ts {
		if t.after != nil {
			t.after(err)
		}
	}
}

// later queues t for the worker; after Close it is dropped. It never
// blocks: the queue has no fixed size (it holds at most a few tasks per
// job), and the worker is woken outside the lock, which t may take.
func (s *Server) later(t task) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.work = append(s.work, t)
	s.mu.Unlock()
	s.signal()
}

// signal wakes the worker; a wake-up already pending is enough.
func (s *Server) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// stopWorker closes the queue and waits for the worker to run what is in it.
func (s *Server) stopWorker() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.signal()
	s.workers.Wait()
}

func (s *Server) healthChanged(board, health string) {
	s.mu.Lock()
	s.health[board] = health
	s.mu.Unlock()
	s.later(task{
		write: func(b *store.Batch) { b.SetHealth(board, health) },
		after: func(err error) {
			if err != nil {
				s.log.Error("store board health", "board", board, "err", err)
			}
		},
	})
}

// Close stops the lab (running jobs stop with their boards powered off;
// the store keeps them as running, so the next server re-queues them) and
// closes the store.
func (s *Server) Close() error {
	err := s.lab.Close()
	s.stopWorker()
	s.mu.Lock()
	var books []*logbook.Book
	for _, lj := range s.jobs {
		if lj.book != nil {
			books = append(books, lj.book)
		}
	}
	for ch := range s.subs {
		delete(s.subs, ch)
		close(ch)
	}
	s.mu.Unlock()
	for _, b := range books { // files are closed outside the lock
		err = errors.Join(err, b.Close())
	}
	return errors.Join(err, s.store.Close())
}

// Handler serves the API under /api/v1/ and the web UI at /.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST /api/v1/jobs", s.allow(Submitter, s.submit))
	mux.HandleFunc("GET /api/v1/jobs", s.allow(Viewer, s.list))
	mux.HandleFunc("GET /api/v1/jobs/{id}", s.allow(Viewer, s.show))
	mux.HandleFunc("POST /api/v1/jobs/{id}/cancel", s.allow(Submitter, s.cancel))
	mux.HandleFunc("GET /api/v1/jobs/{id}/explain", s.allow(Viewer, s.explain))
	mux.HandleFunc("GET /api/v1/jobs/{id}/logs", s.allow(Viewer, s.logs))
	mux.HandleFunc("GET /api/v1/jobs/{id}/junit.xml", s.allow(Viewer, s.junit))
	mux.HandleFunc("GET /api/v1/jobs/{id}/source", s.allow(Viewer, s.source))
	mux.HandleFunc("GET /api/v1/jobs/{id}/stream", s.allowWebSocket(Viewer, s.stream))
	mux.HandleFunc("GET /api/v1/events", s.allowWebSocket(Viewer, s.events))
	mux.HandleFunc("GET /api/v1/devices", s.allow(Viewer, s.devices))
	mux.HandleFunc("PUT /api/v1/devices/{name}/health", s.allow(Admin, s.setHealth))
	s.opsRoutes(mux)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such API: %s %s", r.Method, r.URL.Path))
	})
	mux.Handle("/", web.Handler())
	return s.guard(mux)
}
