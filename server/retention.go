package server

import (
	"os"
	"slices"
)

// prune deletes the ended jobs that retention (Config.Keep, KeepFor) no
// longer keeps: from the store, then their folders, then from the API
// (whoever still sees a job finds its files). Queued and running jobs are
// never pruned. It runs on the worker (or at start, before the worker), so
// it never races a job's store writes or another prune.
func (s *Server) prune() {
	if s.cfg.Keep <= 0 && s.cfg.KeepFor <= 0 {
		return
	}
	cutoff := s.now().Add(-s.cfg.KeepFor)
	var ids []string
	s.mu.Lock()
	kept := 0
	for i := len(s.order) - 1; i >= 0; i-- { // newest first
		lj := s.jobs[s.order[i]]
		if !lj.final {
			continue
		}
		old := s.cfg.KeepFor > 0 && lj.rec.Ended != nil && lj.rec.Ended.Before(cutoff)
		if old || (s.cfg.Keep > 0 && kept >= s.cfg.Keep) {
			ids = append(ids, lj.rec.ID)
			continue
		}
		kept++
	}
	s.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	if err := s.store.Delete(ids...); err != nil {
		s.log.Error("retention: delete jobs from the store", "jobs", ids, "err", err)
		return
	}
	for _, id := range ids {
		if err := os.RemoveAll(s.jobDir(id)); err != nil {
			s.log.Error("retention: delete job folder", "job", id, "err", err)
		}
	}
	s.mu.Lock()
	for _, id := range ids {
		delete(s.jobs, id)
	}
	s.order = slices.DeleteFunc(s.order, func(id string) bool { return s.jobs[id] == nil })
	s.mu.Unlock()
	s.log.Info("retention: jobs deleted", "jobs", len(ids))
}
