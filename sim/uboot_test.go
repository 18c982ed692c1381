package sim

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/boot"
	"github.com/troupe-lab/troupe/console"
	"github.com/troupe-lab/troupe/hardware/tftp"
	"github.com/troupe-lab/troupe/internal/lockedbuf"
)

const bootTO = 30 * time.Second

// tftpRoot starts a TFTP server on 127.0.0.1 serving a directory with an
// "Image" of size bytes; it returns the server's address.
func tftpRoot(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Image"), bytes.Repeat([]byte("kernel!\n"), size/8), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "board.dtb"), []byte("dtb"), 0o644))
	s, err := tftp.Listen("127.0.0.1:0", dir, nil)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	return s.Addr()
}

func newUBootBoard(t *testing.T, name string) (*Board, *console.Console, *lockedbuf.Buffer) {
	t.Helper()
	b, err := New(Options{Name: name, Dir: filepath.Join(t.TempDir(), name), Bootloader: BootloaderUBoot})
	require.NoError(t, err)
	raw := &lockedbuf.Buffer{}
	c := console.New(b.Console(), console.Options{Raw: raw})
	t.Cleanup(func() {
		assert.NoError(t, b.Close())
		_ = c.Close()
	})
	return b, c, raw
}

func bootUBoot(t *testing.T, b *Board, c *console.Console, cmds ...string) error {
	t.Helper()
	return boot.BootUBoot(ctxT(t, bootTO), b, c, boot.UBoot{Commands: cmds})
}

func TestUBootTFTPBoot(t *testing.T) {
	srv := tftpRoot(t, 100_000)
	b, c, raw := newUBootBoard(t, "ub-ok")
	require.NoError(t, bootUBoot(t, b, c, "setenv serverip "+srv, "tftpboot 0x80000 Image", "booti 0x80000"))
	assert.Equal(t, "hello\n", run(t, b, c, "echo hello"))
	out := strings.ReplaceAll(raw.String(), "\r", "")
	assert.Contains(t, out, "Hit any key to stop autoboot:  2 ")
	assert.Contains(t, out, "=> setenv serverip "+srv+"\n")
	assert.Contains(t, out, "Filename 'Image'.\nLoad address: 0x80000\n")
	assert.Contains(t, out, "Bytes transferred = 100000 (186a0 hex)\n")
	assert.Contains(t, out, "Moving Image from 0x80000 to 0x200000")
	assert.Contains(t, out, "Kernel command line: "+defaultCmdline+"\n")
	assert.NotContains(t, out, "Wrong Image Format") // bootcmd did not run

	// A second boot, with a device tree, bootargs and the boot_test layout.
	require.NoError(t, bootUBoot(t, b, c,
		"setenv serverip "+srv, "setenv bootargs console=ttyS0 quiet",
		"tftpboot 0x80000 Image", "tftpboot 0x83000000 board.dtb", "booti 0x80000 - 0x83000000"))
	out = strings.ReplaceAll(raw.String(), "\r", "")
	assert.Contains(t, out, "## Flattened Device Tree blob at 83000000\n")
	assert.Contains(t, out, "Kernel command line: console=ttyS0 quiet\n")
	assert.Equal(t, "hi\n", run(t, b, c, "echo hi"))
}

func requireUBootError(t *testing.T, err error, cmd, line string) {
	t.Helper()
	require.Error(t, err)
	var ue *boot.UBootError
	require.ErrorAs(t, err, &ue, "%v", err)
	assert.Equal(t, cmd, ue.Command)
	assert.Contains(t, ue.Line, line)
	assert.Contains(t, err.Error(), cmd)
}

func TestUBootMissingFile(t *testing.T) {
	srv := tftpRoot(t, 1000)
	b, c, _ := newUBootBoard(t, "ub-missing")
	err := bootUBoot(t, b, c, "setenv serverip "+srv, "tftpboot 0x80000 NoSuchImage", "booti 0x80000")
	requireUBootError(t, err, "tftpboot 0x80000 NoSuchImage", "TFTP error: 'file not found' (1)")
	// The server's message, whatever its case.
	assert.Contains(t, strings.ToLower(err.Error()), "file not found")
	// The board sits at its prompt.
	require.NoError(t, c.Send("echo still here\n"))
	expect(t, c, `still here\n=> $`)
}

func TestUBootNoServerip(t *testing.T) {
	b, c, _ := newUBootBoard(t, "ub-noserver")
	err := bootUBoot(t, b, c, "tftpboot 0x80000 Image", "booti 0x80000")
	requireUBootError(t, err, "tftpboot 0x80000 Image", "*** ERROR: `serverip' not set")
}

func TestUBootUnknownCommand(t *testing.T) {
	b, c, _ := newUBootBoard(t, "ub-unknown")
	err := bootUBoot(t, b, c, "frobnicate now", "booti 0x80000")
	requireUBootError(t, err, "frobnicate now", "Unknown command 'frobnicate' - try 'help'")
}

func TestUBootBootNothingLoaded(t *testing.T) {
	b, c, _ := newUBootBoard(t, "ub-noload")
	for cmd, line := range map[string]string{
		"booti 0x80000": "Bad Linux ARM64 Image magic!",
		"bootz 0x80000": "Bad Linux ARM zImage magic!",
		"bootm 0x80000": "ERROR: can't get kernel image!",
	} {
		err := bootUBoot(t, b, c, cmd)
		requireUBootError(t, err, cmd, line)
	}
	// A missing device tree fails too.
	srv := tftpRoot(t, 1000)
	err := bootUBoot(t, b, c, "setenv serverip "+srv, "tftp 0x80000 Image", "booti 0x80000 - 0x83000000")
	requireUBootError(t, err, "booti 0x80000 - 0x83000000", "ERROR: Did not find a cmdline Flattened Device Tree")
}

func TestUBootTFTPServerSilent(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for TFTP retries")
	}
	// A UDP port nobody answers on.
	dir := t.TempDir()
	s, err := tftp.Listen("127.0.0.1:0", dir, nil)
	require.NoError(t, err)
	addr := s.Addr()
	require.NoError(t, s.Close())
	b, c, _ := newUBootBoard(t, "ub-silent")
	err = bootUBoot(t, b, c, "setenv serverip "+addr, "tftpboot 0x80000 Image", "booti 0x80000")
	requireUBootError(t, err, "tftpboot 0x80000 Image", "TFTP error")
}

// Without a key, autoboot runs bootcmd, which fails: the board sits at the
// u-boot prompt and never gets to a login prompt. Commands typed there work.
func TestUBootNoKey(t *testing.T) {
	srv := tftpRoot(t, 5000)
	b, c, _ := newUBootBoard(t, "ub-nokey")
	require.NoError(t, b.On(ctxT(t, waitTO)))
	expect(t, c, `Hit any key to stop autoboot:  2 `)
	m := expect(t, c, `(?s)(.*)\n=> $`)
	assert.Contains(t, m[1], "Wrong Image Format for bootm command\nERROR: can't get kernel image!")
	expectNot(t, c, `login:`)

	// Line editing: backspace, Ctrl-C, "\r\n".
	require.NoError(t, c.Send("ecx\bho one\r\n"))
	expect(t, c, `^ecx\x08 \x08ho one\none\n=> $`)
	require.NoError(t, c.Send("garbage\x03"))
	expect(t, c, `^garbage<INTERRUPT>\n=> $`)

	// Variables, quotes, several commands a line, run.
	require.NoError(t, c.Send("setenv img Image; setenv srv "+srv+"; printenv img; echo '$img' \"${img}\"\n"))
	expect(t, c, `img=Image\n\$img Image\n=> $`)
	require.NoError(t, c.Send("printenv nothing\n"))
	expect(t, c, `## Error: "nothing" not defined\n=> $`)
	require.NoError(t, c.Send("setenv serverip $srv\n"))
	expect(t, c, `=> $`)
	require.NoError(t, c.Send("setenv load 'tftp ${loadaddr} $img'; run load; printenv filesize fileaddr\n"))
	expect(t, c, `Bytes transferred = 5000 \(1388 hex\)\nfilesize=1388\nfileaddr=80000\n=> $`)
	require.NoError(t, c.Send("boot\n")) // bootcmd = bootm ${loadaddr}
	expect(t, c, `## Booting kernel from Legacy Image at 00080000`)
	login(t, b, c)
	assert.Equal(t, "ok\n", run(t, b, c, "echo ok"))
}

func TestUBootOffAtAnyPoint(t *testing.T) {
	b, c, _ := newUBootBoard(t, "ub-off")
	// During the countdown.
	require.NoError(t, b.On(ctxT(t, waitTO)))
	expect(t, c, `Hit any key to stop autoboot`)
	start := time.Now()
	require.NoError(t, b.Off(ctxT(t, waitTO)))
	assert.Less(t, time.Since(start), time.Second)
	// At the prompt, in the middle of a line.
	require.NoError(t, b.On(ctxT(t, waitTO)))
	expect(t, c, `Hit any key to stop autoboot`)
	require.NoError(t, c.Send("\n"))
	expect(t, c, `=> $`)
	require.NoError(t, c.Send("setenv x"))
	expect(t, c, `setenv x$`)
	require.NoError(t, b.Off(ctxT(t, waitTO)))
	// Variables do not survive power off; reset starts over.
	require.NoError(t, b.On(ctxT(t, waitTO)))
	expect(t, c, `Hit any key to stop autoboot`)
	require.NoError(t, c.Send("x"))
	expect(t, c, `=> $`)
	require.NoError(t, c.Send("printenv x\n"))
	expect(t, c, `## Error: "x" not defined\n=> $`)
	require.NoError(t, c.Send("reset\n"))
	expect(t, c, `resetting \.\.\.\n\nU-Boot 2024\.01-troupe-sim`)
	expect(t, c, `Hit any key to stop autoboot`)
	require.NoError(t, c.Send("\r"))
	expect(t, c, `=> $`)
}

func TestUBootFaultsStillApply(t *testing.T) {
	srv := tftpRoot(t, 1000)
	b, c, _ := newUBootBoard(t, "ub-panic")
	b.SetFaults(Faults{PanicAtBoot: true})
	err := bootUBoot(t, b, c, "setenv serverip "+srv, "tftpboot 0x80000 Image", "booti 0x80000")
	require.ErrorIs(t, err, boot.ErrKernelPanic)
}

func TestUBootParse(t *testing.T) {
	u := &ubootEmu{env: map[string]string{"a": "A", "ab": "AB", "empty": ""}}
	for line, want := range map[string][][]string{
		"":                          nil,
		"  ;; ":                     nil,
		"setenv x 1 2":              {{"setenv", "x", "1", "2"}},
		"echo $a ${a}b $ab $empty;": {{"echo", "A", "Ab", "AB"}},
		`echo '$a; b' "$a; b" \$a`:  {{"echo", "$a; b", "A; b", "$a"}},
		"a; b c ;d":                 {{"a"}, {"b", "c"}, {"d"}},
		`echo "" '' $ x`:            {{"echo", "", "", "$", "x"}},
	} {
		assert.Equal(t, want, u.parse(line), "%q", line)
	}
	assert.Equal(t, []string{`a 'x;y' "p;q" \; `, " b", ""}, splitCommands(`a 'x;y' "p;q" \; ; b;`))
}

func TestUBootBadOption(t *testing.T) {
	_, err := New(Options{Dir: t.TempDir(), Bootloader: "grub"})
	require.ErrorContains(t, err, fmt.Sprintf("unknown bootloader %q", "grub"))
}
