package store

import (
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkAdd: storing one submitted job (committed, fsynced), by one
// submitter after another (serial) and by 100 at once (parallel: they
// share commits). ns/op is per job.
//
//	go test -run '^$' -bench Add ./store
func BenchmarkAdd(b *testing.B) {
	src := fmt.Sprintf("name = %q\n%0500d\n", "job", 0) // a small job file
	b.Run("serial", func(b *testing.B) {
		s, err := Open(filepath.Join(b.TempDir(), "troupe.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		for b.Loop() {
			if _, err := s.Add(&Job{Name: "job", Status: StatusQueued, Source: src}, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel=100", func(b *testing.B) {
		s, err := Open(filepath.Join(b.TempDir(), "troupe.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		commits := s.commits.Load()
		b.SetParallelism(50) // × GOMAXPROCS (2 here): 100 submitters
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Add(&Job{Name: "job", Status: StatusQueued, Source: src}, nil); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/float64(s.commits.Load()-commits), "jobs/commit")
	})
}
