package lab_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lab"
)

func TestQemuBoards(t *testing.T) {
	l, err := lab.Parse("lab.toml", []byte(`
[[board]]
name = "vm-0"
device_type = "qemu-x86_64"
backend = "qemu"

[[board]]
name = "vm-1"
device_type = "qemu-aarch64"
backend = "qemu"
[board.qemu]
arch = "aarch64"
memory = "1G"
cpus = 2
append = "debug"
`))
	require.NoError(t, err)
	assert.Equal(t, &lab.Qemu{Arch: "x86_64", Memory: "256M", CPUs: 1}, l.Boards[0].Qemu)
	assert.Equal(t, &lab.Qemu{Arch: "aarch64", Memory: "1G", CPUs: 2, Append: "debug"}, l.Boards[1].Qemu)
}

func TestQemuBoardErrors(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"arch", "[board.qemu]\narch = \"riscv64\"\n", `lab.toml:6: board "vm-0": qemu.arch: must be one of x86_64, aarch64 (got "riscv64")`},
		{"memory", "[board.qemu]\nmemory = \"lots\"\n", `lab.toml:6: board "vm-0": qemu.memory: want a size like "256M" or "1G" (got "lots")`},
		{"cpus", "[board.qemu]\ncpus = 0\n", `lab.toml:6: board "vm-0": qemu.cpus: must be between 1 and 64 (got 0)`},
		{"unknown key", "[board.qemu]\nkvm = true\n", `lab.toml:6: board "vm-0": qemu: unknown key "kvm"`},
		{"qemu table on a sim board", "[board.qemu]\narch = \"x86_64\"\n", `lab.toml:5: board "vm-0": qemu: is for backend = "qemu"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backend := "qemu"
			if tc.name == "qemu table on a sim board" {
				backend = "sim"
			}
			_, err := lab.Parse("lab.toml", []byte("[[board]]\nname = \"vm-0\"\ndevice_type = \"qemu\"\nbackend = \""+backend+"\"\n"+tc.body))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
