package qemu

// A LAVA job's context (LAVA's qemu device type template variables) on a
// QEMU board: what the board can honour is honoured, the rest refused
// naming the key.

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/troupe-lab/troupe/boot"
)

// jobQemu is what a job's context asks of the board's boots; "" and 0:
// the lab entry's.
type jobQemu struct {
	arch, cpu, machine string
	memoryMiB, cpus    int
}

// lavaArches maps LAVA's arch names to QEMU boards' guest architectures.
var lavaArches = map[string]string{"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}

// qemuName is the form of the CPU and machine names passed to QEMU: a
// name, no properties (",...") and no options.
var qemuName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// refusedContext are the keys of LAVA's qemu template a QEMU board does
// not honour, with why.
var refusedContext = map[string]string{
	"guestfs_size":      "troupe's QEMU boards get the test files through the console, not a guestfs disk",
	"guestfs_interface": "troupe's QEMU boards get the test files through the console, not a guestfs disk",
	"guestfs_driveid":   "troupe's QEMU boards get the test files through the console, not a guestfs disk",
	"model":             "the network device is troupe's own (virtio-net on the group's private network)",
	"vga":               "QEMU boards run without a display; the console is the serial port",
	"display":           "QEMU boards run without a display; the console is the serial port",
	"monitor":           "the QEMU monitor is not exposed to jobs",
}

// contextQemu reads ctx, the job's (and role's) context, against the
// board's lab entry cfg: keys of other device types are not its business.
func contextQemu(ctx map[string]string, cfgCPUs int, cfgMemory string) (jobQemu, error) {
	var j jobQemu
	for _, k := range slices.Sorted(maps.Keys(refusedContext)) {
		if _, ok := ctx[k]; ok {
			return j, fmt.Errorf("context.%s: not supported: %s", k, refusedContext[k])
		}
	}
	if v, ok := ctx["arch"]; ok {
		a, known := lavaArches[v]
		if !known {
			return j, fmt.Errorf("context.arch: %q: troupe's QEMU boards run x86_64 (amd64) and aarch64 (arm64) guests", v)
		}
		j.arch = a
	}
	for _, f := range []struct {
		k   string
		dst *string
	}{{"cpu", &j.cpu}, {"machine", &j.machine}} {
		if v, ok := ctx[f.k]; ok {
			if !qemuName.MatchString(v) {
				return j, fmt.Errorf("context.%s: %q is not a QEMU %s name (letters, digits, '.', '_' and '-'; no properties)", f.k, v, f.k)
			}
			*f.dst = v
		}
	}
	if v, ok := ctx["memory"]; ok {
		n, err := strconv.Atoi(v)
		limit := memoryMiB(cfgMemory)
		if err != nil || n < 1 {
			return j, fmt.Errorf("context.memory: %q is not a size in MiB", v)
		}
		if n > limit {
			return j, fmt.Errorf("context.memory: %d MiB is more than the board's %s (its lab entry's memory)", n, cfgMemory)
		}
		j.memoryMiB = n
	}
	if v, ok := ctx["extra_options"]; ok {
		// The importer joins a list with spaces: "-smp 2".
		f := strings.Fields(v)
		for i := 0; i < len(f); i++ {
			if f[i] != "-smp" || i+1 == len(f) {
				return j, fmt.Errorf("context.extra_options: %q: not supported: troupe builds the QEMU command line itself; of the extra options only -smp N is honoured (the lab entry sets memory, cpus and the kernel command line)", f[i])
			}
			n, err := strconv.Atoi(f[i+1])
			if err != nil || n < 1 || n > cfgCPUs {
				return j, fmt.Errorf("context.extra_options: -smp %q: between 1 and the board's %d CPUs (its lab entry's cpus)", f[i+1], cfgCPUs)
			}
			j.cpus = n
			i++
		}
	}
	// no_kvm: troupe's boards always run under TCG. netdevice (user, tap,
	// bridge): the board is on its group's private network, if any.
	return j, nil
}

// memoryMiB is a lab memory size ("256M", "1G") in MiB.
func memoryMiB(s string) int {
	n, _ := strconv.Atoi(s[:len(s)-1])
	if strings.HasSuffix(s, "G") {
		n *= 1024
	}
	return n
}

// BootWith boots the board as boot.Boot does, with the job's login and
// what its context asks of QEMU (arch, cpu, machine, memory, -smp);
// u-boot commands are refused: a QEMU board boots its kernel directly.
func (b *Board) BootWith(ctx context.Context, con boot.Console, spec boot.Spec) error {
	if len(spec.BootCommands) > 0 {
		return fmt.Errorf("qemu %s: the job gives u-boot commands; a QEMU board boots its kernel without a bootloader", b.name)
	}
	j, err := contextQemu(spec.Context, b.cfg.CPUs, b.cfg.Memory)
	if err != nil {
		return fmt.Errorf("qemu %s: %w", b.name, err)
	}
	p, err := spec.Login.Apply(boot.DefaultPrompts())
	if err != nil {
		return fmt.Errorf("qemu %s: %w", b.name, err)
	}
	b.mu.Lock()
	b.job = j
	b.mu.Unlock()
	return boot.Boot(ctx, b, con, p)
}

// arch is the guest architecture of the next boot.
func (b *Board) arch() string {
	if b.job.arch != "" {
		return b.job.arch
	}
	return b.cfg.Arch
}
