package runner

import (
	"os/exec"
	"testing"
	"time"
)

// BenchmarkHostShellStart is the machine's own speed, not troupe's: the
// start and end of one `/bin/sh -c :`, one after another. Almost all of
// a sim job's CPU is such starts (a board's login shell, its tests'
// shells and commands), and on a VM their cost (page faults, traps to the
// hypervisor) drifts by more than the code's changes do: `make bench`
// prints it beside the job figures so that figures from different runs
// can be compared.
func BenchmarkHostShellStart(b *testing.B) {
	start := time.Now()
	for b.Loop() {
		if out, err := exec.Command("/bin/sh", "-c", ":").CombinedOutput(); err != nil {
			b.Fatalf("sh -c: %v: %s", err, out)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/start")
}
