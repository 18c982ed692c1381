package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/runner"
)

// End-to-end benchmarks: whole jobs through runner.Run on the built-in sim
// lab. Every sim node is a pty plus a real /bin/sh, so these measure the
// harness (actors, consoles, boot emulation, test shell, coordinator) and
// the host's ability to run that many shells.
//
// Metrics: s/job (wall seconds per job), maxrss-MiB (peak RSS of this
// process, lifetime), child-maxrss-MiB (largest reaped child, e.g. one
// shell), tree-peak-MiB (peak sum of the RSS of this process and all its
// descendants, sampled every 250 ms while the jobs run).
//
// Goals: hello-1+3 < 1 s, plain-100 < 10 s, sync N=100 < 10 s,
// sync N=1000 < 30 s and < 4 GiB. N=1000 runs only with TROUPE_BENCH_1000=1:
//
//	TROUPE_BENCH_1000=1 go test -run='^$' -bench='SyncJob/N=1000' -benchtime=1x -timeout=15m ./runner/

// benchJobTimeout bounds every generated job, so that a hang ends as an
// incomplete job (and a failed benchmark) instead of blocking forever.
const benchJobTimeout = "5m"

func BenchmarkJob(b *testing.B) {
	b.Run("hello-1+3", func(b *testing.B) {
		j, err := jobs.Load(filepath.Join("..", "examples", "hello-multinode.toml"))
		if err != nil {
			b.Fatal(err)
		}
		if j.Timeout <= 0 || j.Timeout > 5*time.Minute {
			j.Timeout = 5 * time.Minute
		}
		benchRun(b, j, 0)
	})
	b.Run("plain-100", func(b *testing.B) {
		j := parseJob(b, fmt.Sprintf(`name = "plain-100"
timeout = %q

[roles.node]
device_type = "sim"
count = 100

[[action]]
type = "boot"
timeout = "4m"

[[action]]
type = "test"
name = "plain"
timeout = "4m"
run = "troupe-test-case ok --result pass"
`, benchJobTimeout))
		benchRun(b, j, 100)
	})
}

func BenchmarkSyncJob(b *testing.B) {
	for _, c := range []struct{ nodes, syncs int }{{10, 5}, {100, 5}, {1000, 3}} {
		b.Run(fmt.Sprintf("N=%d", c.nodes), func(b *testing.B) {
			if c.nodes >= 1000 && os.Getenv("TROUPE_BENCH_1000") != "1" {
				b.Skip("1000 nodes = 1000 ptys and shells; run it with: TROUPE_BENCH_1000=1 go test -run='^$' -bench='SyncJob/N=1000' -benchtime=1x -timeout=15m ./runner/")
			}
			if c.nodes >= 1000 {
				logLimits(b)
			}
			var script strings.Builder
			for s := 1; s <= c.syncs; s++ {
				fmt.Fprintf(&script, "troupe-sync s%d || exit 1\n", s)
			}
			script.WriteString("troupe-test-case synced --result pass\n")
			j := parseJob(b, fmt.Sprintf(`name = "sync-%d"
timeout = %q

[multinode]
timeout = "4m"

[roles.node]
device_type = "sim"
count = %d

[[action]]
type = "boot"
timeout = "4m"

[[action]]
type = "test"
name = "sync"
timeout = "4m"
run = '''
%s'''
`, c.nodes, benchJobTimeout, c.nodes, script.String()))
			benchRun(b, j, c.nodes)
		})
	}
}

func parseJob(b *testing.B, toml string) *jobs.Job {
	b.Helper()
	j, err := jobs.Parse("bench.toml", []byte(toml))
	if err != nil {
		b.Fatalf("bench job: %v\n%s", err, toml)
	}
	return j
}

// benchRun runs j b.N times and fails unless every run completes with exit
// code 0 and (wantPass > 0) exactly wantPass passed test cases.
func benchRun(b *testing.B, j *jobs.Job, wantPass int) {
	b.Helper()
	stop := sampleTreeRSS()
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		out := b.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), j.Timeout+2*time.Minute)
		b.StartTimer()
		start := time.Now()
		r, err := runner.Run(ctx, j, nil, runner.Options{Out: out})
		elapsed := time.Since(start)
		b.StopTimer()
		cancel()
		total += elapsed
		if err != nil {
			b.Fatalf("run %d of %s: %v", i, j.Name, err)
		}
		checkResults(b, j, r, wantPass, out)
		b.StartTimer()
	}
	b.StopTimer()
	peak := stop()

	b.ReportMetric(total.Seconds()/float64(b.N), "s/job")
	var self, children syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err == nil {
		b.ReportMetric(float64(self.Maxrss)/1024, "maxrss-MiB") // KiB on Linux
	}
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children); err == nil {
		b.ReportMetric(float64(children.Maxrss)/1024, "child-maxrss-MiB")
	}
	if peak > 0 {
		b.ReportMetric(float64(peak)/(1<<20), "tree-peak-MiB")
	}
}

func checkResults(b *testing.B, j *jobs.Job, r *report.Results, wantPass int, out string) {
	b.Helper()
	if r == nil {
		b.Fatalf("%s: no results", j.Name)
	}
	if r.Job.Status != report.StatusComplete || r.ExitCode() != 0 {
		var bad []string
		for _, n := range r.Nodes {
			if n.Status != report.StatusComplete && len(bad) < 5 {
				bad = append(bad, fmt.Sprintf("%s: %s: %s", n.Name, n.Status, n.Error))
			}
		}
		b.Fatalf("%s: status %s, exit code %d, error %q after %.1fs; first bad nodes:\n%s\n(logs in %s)",
			j.Name, r.Job.Status, r.ExitCode(), r.Job.Error, r.Job.DurationS, strings.Join(bad, "\n"), out)
	}
	if len(r.Nodes) != len(j.Nodes()) {
		b.Fatalf("%s: %d node results, want %d", j.Name, len(r.Nodes), len(j.Nodes()))
	}
	passed, failed := r.Counts("")
	if failed != 0 || passed == 0 || (wantPass > 0 && passed != wantPass) {
		b.Fatalf("%s: %d passed, %d failed test cases, want %d passed", j.Name, passed, failed, wantPass)
	}
}

// logLimits logs what bounds a run with many nodes: open files (a pty
// master, log files and pipes per node) and the kernel's pty limit.
func logLimits(b *testing.B) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		b.Logf("RLIMIT_NOFILE soft %d hard %d", lim.Cur, lim.Max)
	}
	for _, f := range []string{"/proc/sys/kernel/pty/max", "/proc/sys/kernel/pty/nr", "/proc/sys/kernel/threads-max", "/proc/sys/kernel/pid_max"} {
		if v, err := os.ReadFile(f); err == nil {
			b.Logf("%s = %s", f, strings.TrimSpace(string(v)))
		}
	}
	b.Logf("GOMAXPROCS/CPUs: %d", runtimeCPUs())
}

// sampleTreeRSS samples, every 250 ms until stopped, the sum of the RSS of
// this process and all its descendants (the sim shells and what they run),
// and returns a stop function giving the peak in bytes (0 if /proc is not
// readable).
func sampleTreeRSS() (stop func() int64) {
	var peak atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			if v := treeRSS(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		wg.Wait()
		if v := treeRSS(); v > peak.Load() {
			peak.Store(v)
		}
		return peak.Load()
	}
}

var pageSize = int64(os.Getpagesize())

// treeRSS is the RSS in bytes of this process plus all its descendants.
func treeRSS() int64 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	type proc struct {
		ppid int
		rss  int64
	}
	procs := map[int]proc{}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... rss is field 24; comm may hold spaces.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 22 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		rss, _ := strconv.ParseInt(f[21], 10, 64)
		procs[pid] = proc{ppid: ppid, rss: rss * pageSize}
		children[ppid] = append(children[ppid], pid)
	}
	var sum int64
	stack := []int{os.Getpid()}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		sum += procs[p].rss
		stack = append(stack, children[p]...)
	}
	return sum
}
