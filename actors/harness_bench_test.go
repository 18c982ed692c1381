package actors_test

import (
	"fmt"
	"io/fs"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
)

// bootLines is what a fake board of the benchmark prints before its login
// prompt: about what a sim board prints.
var bootLines = func() string {
	s := ""
	for i := range 20 {
		s += fmt.Sprintf("[    %d.%06d] \x1b[32mOK\x1b[0m fake boot line %d of a board's console\r\n", i, i*997, i)
	}
	return s
}()

// BenchmarkHarnessJob runs a job of N nodes (boot, one test printing 10
// lines) on fake boards: no shell, no process, no sandbox, each board a
// goroutine answering its console at once. What it costs is the harness's
// own work per board (actors, console reading and ANSI stripping, boot
// emulation, test-shell markers, logbook, results), plus the fakes' pipe
// I/O. cpu-ms/board is this process's user+system CPU per board per job.
func BenchmarkHarnessJob(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) { benchHarnessJob(b, n) })
	}
}

func benchHarnessJob(b *testing.B, n int) {
	j, err := jobs.Parse("harness-bench.toml", fmt.Appendf(nil, `name = "harness-bench"
timeout = "5m"
[roles.node]
device_type = "sim"
count = %d
[[action]]
type = "boot"
timeout = "4m"
[[action]]
type = "test"
name = "t"
timeout = "4m"
run = "true"
`, n))
	if err != nil {
		b.Fatal(err)
	}
	output := make([]string, 10)
	for i := range output {
		output[i] = fmt.Sprintf("test output line %d", i)
	}
	output = append(output, "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=ok RESULT=pass>")
	script := fakeConfig{stale: "", tests: map[string]fakeTest{"t": {output: output}}}
	boards := map[string]lab.Board{}
	all := lab.ForJob(j).Boards
	for i, nd := range j.Nodes() {
		boards[nd.Name] = all[i]
	}
	discard := slog.New(slog.DiscardHandler)
	var cpu time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		book, err := logbook.New(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return discard }))
		sig := newSignal()
		cfg := actors.Config{
			Job: j, Boards: boards, Book: book, Clock: actors.RealClock{}, Logger: discard,
			Open: func(_ string, bd lab.Board) (actors.Backend, error) {
				f := newFakeBackend(bd.Name, script, sig)
				f.bootOutput = bootLines
				return filePutter{f}, nil
			},
		}
		b.StartTimer()
		before := cpuTime(b)
		run, err := actors.Start(system, cfg)
		if err != nil {
			b.Fatal(err)
		}
		var res *report.Results
		select {
		case res = <-run.Done():
		case <-time.After(5 * time.Minute):
			b.Fatal("the job did not end within 5 min")
		}
		if err := book.Close(); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime(b) - before
		b.StopTimer()
		system.Shutdown()
		if res.Job.Status != report.StatusComplete || len(res.Tests) != 2*n { // the test's own result and "ok"
			b.Fatalf("job %s (%s), %d test cases, want complete with %d", res.Job.Status, res.Job.Error, len(res.Tests), 2*n)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N*n), "cpu-ms/board")
}

// filePutter is a fake board that takes files without its console, as a
// sim board does: the test shell's files are not typed.
type filePutter struct{ *fakeBackend }

func (filePutter) PutFiles(map[string][]byte, fs.FileMode) error { return nil }

// cpuTime is this process's user+system CPU so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
