package server_test

import (
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/troupe-lab/troupe/server"
)

// BenchmarkSubmitLoad: S submitters each POST J one-node jobs to a server
// on a lab of B sim boards, as fast as the server answers, and the
// iteration ends when every job has ended (each must complete). Reports
// jobs/s (jobs ended per second of the iteration), the p50/p99 submit
// latency (POST round trip, as a submitter sees it while the lab runs
// jobs) and the process's CPU per job (the harness and the server; the
// sim shells are children). Goal (issue 18): S=100, J=100, B=200.
//
//	go test -run '^$' -bench 'SubmitLoad/submitters=100' -benchtime 1x -timeout 60m ./server
func BenchmarkSubmitLoad(b *testing.B) {
	for _, c := range []struct{ submitters, each, boards int }{{10, 10, 20}, {100, 100, 200}} {
		b.Run(fmt.Sprintf("submitters=%d/jobs=%d/boards=%d", c.submitters, c.each, c.boards), func(b *testing.B) {
			benchSubmit(b, c.submitters, c.each, c.boards)
		})
	}
}

func benchSubmit(b *testing.B, submitters, each, boards int) {
	base := startServer(b, boards)
	defer loadClient.CloseIdleConnections()
	var lat []time.Duration
	var wall, cpu time.Duration
	for iter := 0; b.Loop(); iter++ {
		var self0, children0 syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self0)
		_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children0)
		start := time.Now()
		var mu sync.Mutex
		var firstErr error
		var wg sync.WaitGroup
		for s := range submitters {
			wg.Go(func() {
				for i := range each {
					name := fmt.Sprintf("load-%d-%d-%d", iter, s, i)
					t := time.Now()
					_, err := post(base, smallJob(name, name))
					d := time.Since(t)
					mu.Lock()
					lat = append(lat, d)
					if err != nil && firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					if err != nil {
						return
					}
				}
			})
		}
		wg.Wait()
		if firstErr != nil {
			b.Fatal(firstErr)
		}
		// Polled every second: a list of thousands of queued jobs every
		// 100 ms took 15 % of the CPU of the 100 × 100 run.
		waitIdleEvery(b, base, 60*time.Minute, time.Second)
		wall += time.Since(start)
		var self, children syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
		_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
		cpu += rusageCPU(self) - rusageCPU(self0)
		var ended []server.Summary
		if err := getJSON(base+"/api/v1/jobs?status=complete", &ended); err != nil {
			b.Fatal(err)
		}
		if want := (iter + 1) * submitters * each; len(ended) != want {
			var failed []server.Summary
			_ = getJSON(base+"/api/v1/jobs?status=incomplete,canceled", &failed)
			why := map[string]int{} // error → jobs
			for _, j := range failed {
				why[j.Error]++
			}
			b.Fatalf("%d jobs complete, want %d; the others' errors (error: jobs): %v", len(ended), want, why)
		}
	}
	b.StopTimer()
	jobs := float64(b.N * submitters * each)
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(jobs/wall.Seconds(), "jobs/s")
	b.ReportMetric(ms(pct(0.50)), "submit-p50-ms")
	b.ReportMetric(ms(pct(0.99)), "submit-p99-ms")
	b.ReportMetric(ms(cpu)/jobs, "harness-cpu-ms/job")
}

func rusageCPU(r syscall.Rusage) time.Duration {
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}
