package server

// A job's life in the server: how it is parsed and queued, and how the
// lab's callbacks record its start, phases and results.

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	// shown is the source as the API shows it, its secrets masked: made
	// once, at the first read (showErr if it cannot be).
	showOnce sync.Once
	shown    string
	showErr  error
}

// shownSource returns the job's source with every secret value replaced
// by logbook.Masked. The values are read from the stored text, its secrets
// table or mapping only (not a full parse: a LAVA job's may fetch
// repositories), once per job. The store keeps the secrets: the server
// needs them to queue the job again after a restart.
func (lj *liveJob) shownSource() (string, error) {
	lj.showOnce.Do(func() {
		values, err := maskableSecrets(lj.rec.File, lj.rec.Format, []byte(lj.rec.Source))
		if err != nil {
			lj.showErr = fmt.Errorf("job %s: its secrets cannot be masked: %w", lj.rec.ID, err)
			return
		}
		lj.shown = logbook.Masker(values).Replace(lj.rec.Source)
	})
	return lj.shown, lj.showErr
}

// maskableSecrets returns the values of the secrets of the job file data
// (format "lava" or "toml"), reading its secrets only. Each must be
// written in data as it is (not with escapes, nor folded over lines), or
// masking its value would leave its spelling in the text shown.
func maskableSecrets(file, format string, data []byte) ([]string, error) {
	secretValues := jobs.SecretValues
	if format == "lava" {
		secretValues = lava.SecretValues
	}
	values, err := secretValues(file, data)
	if err != nil {
		return nil, err
	}
	for _, v := range values {
		if !bytes.Contains(data, []byte(v)) {
			// Never the value, nor its name: the error is shown.
			return nil, jobs.Errors{{File: file, Key: "secrets", Msg: "a secret's value must be written as it is, " +
				"without escapes and on one line, so that the server can mask it where it shows the job file"}}
		}
	}
	return values, nil
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
// else troupe TOML. Its images resolve under the images root only; a LAVA
// job's URLs are fetched from the mirrors only (Config.LAVAMirrors), never
// from the network.
func parseJob(images, file, format string, data []byte, mirrors ...lava.Mirror) (*jobs.Job, error) {
	parse := jobs.Parse
	if format == "lava" {
		parse = func(file string, data []byte) (*jobs.Job, error) {
			opts := lava.DefaultOptions()
			opts.Images = images
			opts.Repos.Mirrors, opts.Downloads.Mirrors = mirrors, mirrors
			return lava.ImportWith(file, data, opts)
		}
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

// checkJob parses a submitted job and checks that the lab can run it
// (l nil: boards may join from workers, the lab explains why it waits).
func checkJob(l *lab.Lab, images, file, format string, data []byte, mirrors ...lava.Mirror) (*jobs.Job, error) {
	j, err := parseJob(images, file, format, data, mirrors...)
	if err != nil {
		return nil, err
	}
	if _, err := maskableSecrets(file, format, data); err != nil {
		return nil, err
	}
	if l != nil {
		if err := l.Check(j); err != nil {
			return nil, err
		}
	}
	if err := imagesOnServer(j); err != nil {
		return nil, err
	}
	return j, nil
}

// imagesOnServer checks that the images the job deploys are there: the
// boards get them from the server's file system (relative paths are
// resolved against the job file's path as submitted, see the file
// parameter).
func imagesOnServer(j *jobs.Job) error {
	var errs []error
	for _, a := range j.Actions {
		paths := []string{a.Image}
		if a.Images != nil {
			paths = append(paths, a.Images.Kernel, a.Images.Initrd, a.Images.Rootfs, a.Images.DTB)
			for _, k := range slices.Sorted(maps.Keys(a.Images.Files)) {
				paths = append(paths, a.Images.Files[k])
			}
		}
		for _, p := range paths {
			if p == "" {
				continue
			}
			if _, err := os.Stat(p); err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: image %s: not on the server: %w", j.File, a.Line, p, errors.Unwrap(err)))
			}
		}
	}
	return errors.Join(errs...)
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
	j, err := parseJob(s.cfg.Images, lj.rec.File, lj.rec.Format, []byte(lj.rec.Source), s.cfg.LAVAMirrors...)
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
	book.SetLimit(s.labDef.LogLimit)
	secrets := slices.Collect(maps.Values(j.Secrets))
	book.Mask(secrets)
	mask := logbook.Masker(secrets)
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
			// A node's error may quote what a test printed.
			e.Phase, e.Detail = mask.Replace(e.Phase), mask.Replace(e.Detail)
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
	now := s.now().UTC()
	s.mu.Lock()
	lj.rec.Status, lj.rec.Started, lj.rec.Boards, lj.explain = store.StatusRunning, &now, boards, nil
	lj.nodes = map[string]*report.Node{}
	for node, b := range boards {
		role := node[:strings.LastIndexByte(node, '-')]
		lj.nodes[node] = &report.Node{Name: node, Role: role, Board: b, Status: store.StatusRunning}
	}
	rec := *lj.rec
	s.mu.Unlock()
	s.later(task{
		write: func(b *store.Batch) { b.Put(&rec) },
		after: func(err error) {
			if err != nil {
				s.log.Error("store job start", "job", rec.ID, "err", err)
			}
		},
	})
	s.notify(lj)
}

// done records a job's final results: results.json and junit.xml in its
// directory, the record in the store, and the end of its streams.
func (s *Server) done(lj *liveJob, res *report.Results) {
	now := s.now().UTC()
	var rec store.Job
	s.later(task{
		// Files, then the store, then what the API shows: whoever sees the
		// job ended finds its results, and so does the next server.
		files: func() {
			if err := report.Write(lj.dir, res); err != nil {
				s.log.Error("write results", "job", lj.rec.ID, "err", err)
			}
		},
		write: func(b *store.Batch) {
			s.mu.Lock()
			rec = *lj.rec
			s.mu.Unlock()
			rec.Status, rec.Error, rec.Ended, rec.Results, rec.Attempts = res.Job.Status, res.Job.Error, &now, res, res.Job.Attempts
			b.Put(&rec)
		},
		after: func(err error) {
			if err != nil {
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
		},
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
