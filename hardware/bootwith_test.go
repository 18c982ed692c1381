package hardware

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/boot"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
)

// TestBootWithSpec: a boot action's spec picks a named command set of the
// board's lab entry, fills the placeholders the entry leaves open from the
// job's context (never the board's own), and replaces the login it sets.
func TestBootWithSpec(t *testing.T) {
	bm := lab.BootMethod{Method: "u-boot", Interrupt: "Press SPACE", Commands: []string{"boot"},
		CommandSets: map[string][]string{"nfs": {"setenv bootargs console={console} addr={kernel_addr}", "bootz"}},
		Vars:        map[string]string{"kernel_addr": "0x82000000"},
		Login:       "login:", User: "root", ShellPrompt: lab.DefaultShellPrompt, UBootPrompt: lab.DefaultUBootPrompt, InterruptString: "\n"}
	b := &Board{Switch: &recSwitch{}, name: "bbb-01", hw: lab.Hardware{Boot: bm}}
	con := &recConsole{}
	err := b.BootWith(context.Background(), con, boot.Spec{Commands: "nfs", Context: map[string]string{"console": "ttyO0", "kernel_addr": "0x0"}})
	var ue *boot.UBootError
	require.True(t, err == nil || errors.As(err, &ue), "%v", err)
	assert.Contains(t, con.calls, "send setenv bootargs console=ttyO0 addr=0x82000000\n", "the job's context fills {console}, not the board's {kernel_addr}")

	err = b.BootWith(context.Background(), &recConsole{}, boot.Spec{Commands: "ramdisk"})
	assert.ErrorContains(t, err, `boot bbb-01: the job boots with the command set "ramdisk"; the board's lab entry has nfs`)

	// The job's own commands replace the board's (and any set); the lab's
	// placeholders fill them.
	con = &recConsole{}
	err = b.BootWith(context.Background(), con, boot.Spec{Commands: "nfs", BootCommands: []string{"setenv a {kernel_addr}", "bootm"}})
	require.True(t, err == nil || errors.As(err, &ue), "%v", err)
	assert.Contains(t, con.calls, "send setenv a 0x82000000\n")
	assert.Contains(t, con.calls, "send bootm\n")
	assert.NotContains(t, strings.Join(con.calls, ""), "bootargs", "the named set is not typed")

	bm.Method = "shell"
	b.hw.Boot = bm
	err = b.BootWith(context.Background(), &recConsole{}, boot.Spec{BootCommands: []string{"bootm"}})
	assert.ErrorContains(t, err, "the job gives u-boot commands")
	con = &recConsole{}
	require.NoError(t, b.BootWith(context.Background(), con, boot.Spec{Login: boot.Login{Prompt: "bbb login:", User: "lava"}}))
	assert.Equal(t, `expect ((?:bbb login:)\s*$)|(Kernel panic - not syncing[^\n]*\n)`, con.calls[0])
	assert.Equal(t, "send lava\n", con.calls[1])
}

// TestStageFiles: named images are staged for TFTP as {name}; an
// nfsrootfs needs a command set that uses it.
func TestStageFiles(t *testing.T) {
	root, src := t.TempDir(), t.TempDir()
	for _, f := range []string{"zImage", "rootfs.tgz"} {
		require.NoError(t, os.WriteFile(filepath.Join(src, f), []byte(f), 0o644))
	}
	im := jobs.Images{Kernel: filepath.Join(src, "zImage"), Files: map[string]string{"nfsrootfs": filepath.Join(src, "rootfs.tgz")}}
	hw := lab.Hardware{Deploy: lab.Deploy{Method: "tftp"}, Boot: lab.BootMethod{Method: "u-boot", Commands: []string{"bootz"}}}
	b := &Board{Switch: &recSwitch{}, name: "bbb-01", hw: hw, opts: Options{TFTPRoot: root, ServerIP: "127.0.0.1:6969"}}
	require.NoError(t, b.DeployImages(context.Background(), im))
	b.hw.Boot.Interrupt = "Hit any key"
	err := b.BootWith(context.Background(), &recConsole{}, boot.Spec{})
	assert.ErrorContains(t, err, "the job deploys an nfsrootfs, but the commands it boots with mount none ({nfsrootfs})")

	// The commands it boots with: a set of the lab entry's, or the job's own.
	b.hw.Boot.CommandSets = map[string][]string{"nfs": {"setenv bootargs root=/dev/nfs nfsroot={server_ip}:{nfsrootfs}"}}
	err = b.BootWith(context.Background(), &recConsole{}, boot.Spec{Commands: "nfs"})
	assert.NotContains(t, fmt.Sprint(err), "mount none")
	err = b.BootWith(context.Background(), &recConsole{}, boot.Spec{BootCommands: []string{"setenv bootargs nfsroot={server_ip}:{nfsrootfs}", "bootz"}})
	assert.NotContains(t, fmt.Sprint(err), "mount none")
	require.NoError(t, b.DeployImages(context.Background(), im))
	assert.Equal(t, "bbb-01/rootfs.tgz", b.vars["nfsrootfs"])
	got, err := os.ReadFile(filepath.Join(root, "bbb-01", "rootfs.tgz"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(got), "rootfs"))
}
