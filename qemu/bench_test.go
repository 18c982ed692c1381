package qemu_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/qemu"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/runner"
	"github.com/troupe-lab/troupe/testshell"
)

// Whole QEMU jobs through runner.Run on examples/labs/qemu.toml: wall time
// from submit to results (boot of the installed kernel under TCG, login,
// helpers, tests, power off), and the peak RSS of each QEMU process
// (VmRSS, sampled every 100 ms). Goals (2 cores, no KVM): single node
// < 8 s, two nodes < 12 s; LAVA's lava-run takes 35.8 s and 49 s for the
// same jobs on this kind of machine. The aarch64 cases boot Debian's arm64
// kernel (make deps fetches it) on -M virt.
//
//	go test -run='^$' -bench=QemuJob -benchtime=3x ./qemu/

const singleJob = `
name = "qemu-single"
timeout = "2m"
[roles.dut]
device_type = "qemu-x86_64"
[[action]]
type = "boot"
timeout = "60s"
[[action]]
type = "test"
name = "smoke"
timeout = "60s"
run = '''
troupe-test-case kernel --shell uname -r
troupe-test-case address --shell test -n "$TROUPE_IP"
'''
`

// syncJob is a job of two QEMU boards that meet at n barriers.
func syncJob(n int) string {
	var script strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&script, "troupe-sync s%d || exit 1\n", i)
	}
	script.WriteString("troupe-test-case synced --result pass\n")
	return fmt.Sprintf(`name = "qemu-syncs"
timeout = "2m"
[roles.node]
device_type = "qemu-x86_64"
count = 2
[[action]]
type = "boot"
timeout = "60s"
[[action]]
type = "test"
name = "sync"
timeout = "60s"
run = '''
%s'''
`, script.String())
}

// helpersUnderTmp are the files the board actor has built into the
// default images (the test shell's helpers): built before the clock starts.
func helpersUnderTmp(b *testing.B) map[string][]byte {
	files, err := testshell.HelpersUnderTmp()
	if err != nil {
		b.Fatal(err)
	}
	return files
}

func BenchmarkQemuJob(b *testing.B) {
	needQemu(b)
	if _, err := qemu.DefaultImages(context.Background(), "x86_64", "", helpersUnderTmp(b)); err != nil {
		b.Fatal(err)
	}
	l, err := lab.Load(filepath.Join("..", "examples", "labs", "qemu.toml"))
	if err != nil {
		b.Fatal(err)
	}
	single, err := jobs.Parse("single.toml", []byte(singleJob))
	if err != nil {
		b.Fatal(err)
	}
	pair, err := jobs.Load(filepath.Join("..", "examples", "qemu-pair.toml"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("single", func(b *testing.B) { benchJob(b, single, l) })
	b.Run("pair", func(b *testing.B) { benchJob(b, pair, l) })
	// aarch64: Debian's arm64 kernel on -M virt (board arm-0), alone and
	// with an x86_64 client (examples/qemu-arm-pair.toml).
	// A barrier between two QEMU boards, end to end: (syncs=1000 − syncs=0)
	// / 1000 of the job's wall time.
	for _, n := range []int{0, 1000} {
		j, err := jobs.Parse("syncs.toml", []byte(syncJob(n)))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("pair-syncs=%d", n), func(b *testing.B) { benchJob(b, j, l) })
	}
	b.Run("single-aarch64", func(b *testing.B) {
		needArm64(b)
		if _, err := qemu.DefaultImages(context.Background(), "aarch64", "", helpersUnderTmp(b)); err != nil {
			b.Fatal(err)
		}
		arm, err := jobs.Parse("single-aarch64.toml", []byte(strings.Replace(singleJob, "qemu-x86_64", "qemu-aarch64", 1)))
		if err != nil {
			b.Fatal(err)
		}
		benchJob(b, arm, l)
	})
	b.Run("pair-aarch64-x86_64", func(b *testing.B) {
		needArm64(b)
		armPair, err := jobs.Load(filepath.Join("..", "examples", "qemu-arm-pair.toml"))
		if err != nil {
			b.Fatal(err)
		}
		benchJob(b, armPair, l)
	})
}

func benchJob(b *testing.B, j *jobs.Job, l *lab.Lab) {
	var peak rssPeak
	ns := qemu.NewNetworks(nil)
	open := func(_ string, lb lab.Board, _ string) (actors.Backend, error) {
		q, err := qemu.Open(lb, qemu.Options{Networks: ns})
		if err == nil {
			peak.watch(q)
		}
		return q, err
	}
	var wall time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		r, err := runner.Run(context.Background(), j, l, runner.Options{Out: b.TempDir(), Open: open})
		wall += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if r.Job.Status != report.StatusComplete {
			b.Fatalf("job %s: %s: %s", j.Name, r.Job.Status, r.Job.Error)
		}
	}
	peak.stop()
	b.ReportMetric(wall.Seconds()/float64(b.N), "s/job")
	b.ReportMetric(peak.max()/1024, "rss-MiB/VM")
	b.ReportMetric(0, "ns/op")
}

// rssPeak samples the VmRSS of the QEMU process of every board it watches.
type rssPeak struct {
	mu   sync.Mutex
	kib  float64
	quit []chan struct{}
	wg   sync.WaitGroup
}

func (p *rssPeak) watch(q *qemu.Board) {
	quit := make(chan struct{})
	p.mu.Lock()
	p.quit = append(p.quit, quit)
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			if kib, ok := vmRSS(q.PID()); ok {
				p.mu.Lock()
				p.kib = max(p.kib, kib)
				p.mu.Unlock()
			}
		}
	}()
}

func (p *rssPeak) stop() {
	p.mu.Lock()
	for _, q := range p.quit {
		close(q)
	}
	p.quit = nil
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *rssPeak) max() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kib
}

// vmRSS reads a process's resident set size in KiB.
func vmRSS(pid int) (float64, bool) {
	if pid == 0 {
		return 0, false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kib, err := strconv.ParseFloat(f[0], 64)
				return kib, err == nil
			}
		}
	}
	return 0, false
}
