package labstate

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/scheduler"
)

// BenchmarkStep: one event on a lab of 5 000 boards (three device types,
// a quarter with a tag) with 10 000 jobs queued behind running ones: a
// Tick (re-plan, explain every waiting job), a job's end (re-plan,
// explain only new jobs) and a SetHealth that drops no
// job (every queued job is checked for feasibility, then a re-plan).
// Goal (issue 18): < 100 ms per event on 2 cores; cpu-ms/op is the CPU
// time of the process, the better figure on a loaded machine.
func BenchmarkStep(b *testing.B) {
	const nBoards, nJobs = 5000, 10000
	types := []string{"sim", "rpi4", "bbb"}
	var boards []scheduler.Board
	for i := range nBoards {
		bd := scheduler.Board{Name: fmt.Sprintf("%s-%d", types[i%3], i), DeviceType: types[i%3]}
		if i%4 == 0 {
			bd.Tags = []string{"usb"}
		}
		boards = append(boards, bd)
	}
	m := New(Config{Boards: boards, BadAfter: 3})
	for i := range nJobs {
		j := scheduler.Job{ID: fmt.Sprintf("job-%05d", i), Name: "j", Priority: i % 3 * 25, Submitted: t0.Add(time.Duration(i) * time.Millisecond),
			Timeout: time.Duration(1+i%60) * time.Minute}
		for k := range 1 + i%3 {
			r := scheduler.Role{Name: fmt.Sprintf("r%d", k), DeviceType: types[(i+k)%3], Count: 1 + (i+k)%4}
			if i%5 == 0 {
				r.Tags = []string{"usb"}
			}
			j.Roles = append(j.Roles, r)
		}
		if i%20 == 0 {
			j.Avoid = []string{boards[i%nBoards].Name}
		}
		// Queued directly: submitting them one by one plans 10 000 times.
		m.queue = append(m.queue, &queued{job: j})
	}
	m.Step(Tick{Now: t0}) // the lab fills up; the rest wait
	if len(m.running) == 0 || len(m.queue) < nJobs/2 {
		b.Fatalf("%d running, %d queued: not a full lab with a long queue", len(m.running), len(m.queue))
	}
	b.Run("tick", func(b *testing.B) {
		cpu0 := processCPU()
		for b.Loop() {
			if fx := m.Step(Tick{Now: t0.Add(time.Second)}); len(of[Waiting](fx)) != len(m.queue) {
				b.Fatalf("%d waiting effects for %d queued jobs", len(of[Waiting](fx)), len(m.queue))
			}
		}
		b.ReportMetric(float64((processCPU()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
	})
	// A job's end: the most frequent event of a busy lab. It re-plans
	// (its boards go to waiting jobs) and explains only new jobs.
	b.Run("job-end", func(b *testing.B) {
		cpu0 := processCPU()
		for b.Loop() {
			var id string
			for id = range m.running {
				break
			}
			r := m.running[id]
			res := results(report.StatusComplete, "")
			for i, bd := range r.boards {
				res.Nodes = append(res.Nodes, report.Node{Name: fmt.Sprintf("n-%d", i), Board: bd, Status: report.StatusComplete})
			}
			if fx := m.Step(AttemptDone{Now: t0.Add(time.Second), ID: id, Results: res}); len(of[Done](fx)) != 1 {
				b.Fatalf("%d Done effects for one job's end", len(of[Done](fx)))
			}
		}
		b.ReportMetric(float64((processCPU()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
	})
	b.Run("set-health", func(b *testing.B) {
		queued := len(m.queue)
		cpu0 := processCPU()
		h := []scheduler.Health{scheduler.Maintenance, scheduler.Good}
		for i := 0; b.Loop(); i++ {
			m.Step(SetHealth{Now: t0.Add(time.Second), Board: boards[nBoards-1].Name, Health: h[i%2]})
		}
		b.ReportMetric(float64((processCPU()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
		if len(m.queue) != queued {
			b.Fatalf("%d queued after, %d before: a job was dropped", len(m.queue), queued)
		}
	})
}

// processCPU is the user+system CPU time of this process so far.
func processCPU() time.Duration {
	var r syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &r); err != nil {
		return 0
	}
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}
