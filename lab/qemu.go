package lab

import (
	"regexp"

	"github.com/troupe-lab/troupe/jobs/tomlfile"
)

// QemuBackend is the backend of QEMU boards: a qemu-system process per
// power-on, booting a real kernel under TCG.
const QemuBackend = "qemu"

// Qemu is how a QEMU board is emulated (backend = "qemu", [board.qemu]).
type Qemu struct {
	Arch   string // "x86_64" (default) or "aarch64"
	Memory string // guest RAM, QEMU syntax ("256M", "1G"); default DefaultQemuMemory
	CPUs   int    // default 1
	Append string // extra kernel command-line arguments
}

// DefaultQemuMemory is the RAM of a QEMU board that does not set memory.
const DefaultQemuMemory = "256M"

// QemuArches are the guest architectures of QEMU boards.
var QemuArches = []string{"x86_64", "aarch64"}

var memoryRE = regexp.MustCompile(`^[1-9][0-9]*[MG]$`)

// parseQemu reads the optional [board.qemu] table of a QEMU board.
func parseQemu(t tomlfile.Table) *Qemu {
	q := &Qemu{Arch: "x86_64", Memory: DefaultQemuMemory, CPUs: 1}
	qt, ok := t.Table("qemu")
	if !ok {
		return q
	}
	qt.Only("arch", "memory", "cpus", "append")
	if qt.Has("arch") {
		q.Arch = qt.OneOf("arch", QemuArches...)
	}
	if m, ok := qt.String("memory"); ok {
		if !memoryRE.MatchString(m) {
			qt.Errorf("memory", "want a size like \"256M\" or \"1G\" (got %q)", m)
		}
		q.Memory = m
	}
	if n, ok := qt.Int("cpus"); ok {
		if n < 1 || n > 64 {
			qt.Errorf("cpus", "must be between 1 and 64 (got %d)", n)
		}
		q.CPUs = int(n)
	}
	q.Append, _ = qt.String("append")
	return q
}
