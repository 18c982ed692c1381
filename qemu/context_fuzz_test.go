package qemu

import (
	"strings"
	"testing"
)

// FuzzContextQemu: whatever a job's context says, what reaches QEMU's
// command line is a plain name or a bounded number: never an option,
// a property or more than the lab entry allows.
func FuzzContextQemu(f *testing.F) {
	f.Add("arm64", "cortex-a57", "virt", "512", "-smp 2")
	f.Add("amd64", "max,pauth=off", "virt -drive x", "99999", "-smp 1 -global a=b")
	f.Fuzz(func(t *testing.T, arch, cpu, machine, memory, extra string) {
		j, err := contextQemu(map[string]string{"arch": arch, "cpu": cpu, "machine": machine, "memory": memory, "extra_options": extra}, 2, "1G")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "context.") {
				t.Fatalf("error does not name the context key: %v", err)
			}
			return
		}
		if j.arch != "x86_64" && j.arch != "aarch64" {
			t.Fatalf("arch %q", j.arch)
		}
		for _, v := range []string{j.cpu, j.machine} {
			if !qemuName.MatchString(v) {
				t.Fatalf("%q reaches QEMU", v)
			}
		}
		if j.memoryMiB < 1 || j.memoryMiB > 1024 || j.cpus > 2 {
			t.Fatalf("memory %d MiB, %d CPUs", j.memoryMiB, j.cpus)
		}
	})
}
