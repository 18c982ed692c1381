package lab_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lab"
)

const ubootBoard = `[[board]]
name = "bbb-01"
device_type = "beaglebone-black"
backend = "hardware"
[board.console]
kind = "tcp"
address = "127.0.0.1:2000"
[board.power]
kind = "manual"
[board.boot]
method = "%s"
interrupt = "Hit any key"
commands = ["boot"]
`

// TestCommandSets: a u-boot board's named boot command sets (LAVA's
// device dictionary's boot commands: nfs, ramdisk ...).
func TestCommandSets(t *testing.T) {
	l, err := lab.Parse("lab.toml", []byte(fmt.Sprintf(ubootBoard, "u-boot")+`[board.boot.command_sets]
nfs = ["setenv bootargs root=/dev/nfs nfsroot={server_ip}:{nfsrootfs}", "bootz"]
ramdisk = ["bootz {kernel_addr} {ramdisk_addr}"]
`))
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"nfs": {"setenv bootargs root=/dev/nfs nfsroot={server_ip}:{nfsrootfs}", "bootz"}, "ramdisk": {"bootz {kernel_addr} {ramdisk_addr}"}},
		l.Boards[0].Hardware.Boot.CommandSets)

	for _, tc := range []struct{ name, src, want string }{
		{"empty set", fmt.Sprintf(ubootBoard, "u-boot") + "[board.boot.command_sets]\nnfs = []\n", "command_sets.nfs: must hold at least one command"},
		{"bad name", fmt.Sprintf(ubootBoard, "u-boot") + "[board.boot.command_sets]\n\"a b\" = [\"x\"]\n", "a command set's name is letters, digits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := lab.Parse("lab.toml", []byte(tc.src))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
