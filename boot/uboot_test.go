package boot_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/boot"
	"github.com/troupe-lab/troupe/console"
)

var ubootVars = map[string]string{
	"server_ip":   "10.0.0.1",
	"kernel":      "Image",
	"kernel_addr": "0x80000",
	"dtb":         "board.dtb",
	"dtb_addr":    "0x83000000",
}

var ubootTFTPCommands = []string{
	"setenv serverip {server_ip}",
	"tftpboot {kernel_addr} {kernel}",
	"tftpboot {dtb_addr} {dtb}",
	"booti {kernel_addr} - {dtb_addr}",
}

const (
	ubootBanner   = "\r\nU-Boot 2024.01 (Jan 01 2024 - 00:00:00 +0000)\r\n\r\nDRAM:  2 GiB\r\nNet:   eth0: ethernet@ff3f0000\r\n"
	ubootCount    = "Hit any key to stop autoboot:  3 "
	kernelLog     = "## Flattened Device Tree blob at 83000000\r\nStarting kernel ...\r\n\r\n[    0.000000] Booting Linux on physical CPU 0x0\r\n[    1.000000] Run /sbin/init as init process\r\n"
	kernelToLogin = kernelLog + "\r\nfake login: "
)

// ubootAnswer is what the fake u-boot prints for a command; boots says the
// command starts the kernel (no u-boot prompt after it).
type ubootAnswer func(cmd string) (out string, boots bool)

// okAnswers: setenv is silent, tftpboot loads, booti boots.
func okAnswers(cmd string) (string, bool) {
	switch {
	case strings.HasPrefix(cmd, "tftpboot "):
		f := strings.Fields(cmd)
		return "Using ethernet@ff3f0000 device\r\nTFTP from server 10.0.0.1; our IP address is 10.0.0.2\r\n" +
			"Filename '" + f[len(f)-1] + "'.\r\nLoad address: " + f[1] + "\r\nLoading: #################\r\ndone\r\n" +
			"Bytes transferred = 1234567 (12d687 hex)\r\n", false
	case strings.HasPrefix(cmd, "booti "), cmd == "boot":
		return "", true
	}
	return "", false
}

// ubootBoard plays a board with u-boot: banner and autoboot countdown, then
// (once it gets a key) a prompt; it echoes each command it is sent, reports
// it on cmds, and prints the answer and a prompt, or, for a command that
// boots, kernel. If kernel ends with a login prompt, it reports the user
// name on users and prints a shell prompt.
func ubootBoard(prompt string, cmds chan<- string, answer ubootAnswer, kernel string, users chan<- string) func(b *fakeBoard) {
	return func(b *fakeBoard) {
		defer b.drain()
		if b.print(ubootBanner+ubootCount) != nil {
			return
		}
		if _, err := b.readLine(); err != nil { // the key
			return
		}
		if b.print("\r\n"+prompt) != nil {
			return
		}
		for {
			l, err := b.readLine()
			if err != nil {
				return
			}
			cmd := strings.TrimSuffix(l, "\n")
			cmds <- cmd
			out, boots := answer(cmd)
			if b.print(cmd+"\r\n"+out) != nil {
				return
			}
			if boots {
				break
			}
			if b.print(prompt) != nil {
				return
			}
		}
		if b.print(kernel) != nil || !strings.HasSuffix(kernel, "login: ") {
			return
		}
		u, err := b.readLine()
		if err != nil {
			return
		}
		users <- u
		_ = b.print("root@fake:~# ")
	}
}

// received returns what is buffered in ch.
func received(ch chan string) []string {
	var got []string
	for {
		select {
		case s := <-ch:
			got = append(got, s)
		default:
			return got
		}
	}
}

func TestBootUBootLogsIn(t *testing.T) {
	tests := []struct {
		name     string
		uboot    boot.UBoot
		prompt   string
		wantUser string
	}{
		{
			name:     "defaults",
			uboot:    boot.UBoot{Commands: ubootTFTPCommands, Vars: ubootVars},
			prompt:   "=> ",
			wantUser: "root\n",
		},
		{
			name: "custom prompts",
			uboot: boot.UBoot{
				Interrupt: regexp.MustCompile(`stop autoboot: +\d`),
				Prompt:    regexp.MustCompile(`U-Boot> $`),
				Commands:  ubootTFTPCommands,
				Vars:      ubootVars,
				Prompts:   boot.Prompts{Login: regexp.MustCompile(`login: $`), User: "tester", Shell: regexp.MustCompile(`~# $`)},
			},
			prompt:   "U-Boot> ",
			wantUser: "tester\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePower()
			con, b := newFakeLine(t, nil)
			cmds, users := make(chan string, 16), make(chan string, 1)
			play(t, p, b, ubootBoard(tc.prompt, cmds, okAnswers, kernelToLogin, users))

			require.NoError(t, boot.BootUBoot(ctxT(t, waitTO), p, con, tc.uboot))
			assert.Equal(t, []string{
				"setenv serverip 10.0.0.1",
				"tftpboot 0x80000 Image",
				"tftpboot 0x83000000 board.dtb",
				"booti 0x80000 - 0x83000000",
			}, received(cmds))
			assert.Equal(t, []string{tc.wantUser}, received(users))
			assert.Equal(t, []string{"off", "on", "state"}, p.Calls())
		})
	}
}

func TestBootUBootOrder(t *testing.T) {
	p := newFakePower()
	err := boot.BootUBoot(ctxT(t, waitTO), p, recConsole{p}, boot.UBoot{
		Commands: []string{"setenv serverip {server_ip}", "booti {kernel_addr}"},
		Vars:     ubootVars,
	})
	require.NoError(t, err)
	calls := p.Calls()
	var sends []string
	for _, c := range calls {
		if s, ok := strings.CutPrefix(c, "send "); ok {
			sends = append(sends, s)
		}
	}
	require.GreaterOrEqual(t, len(calls), 5)
	assert.Equal(t, []string{"off", "discard", "on", "state", "expect " + boot.DefaultUBootInterrupt.String()}, calls[:5])
	assert.Equal(t, []string{"\n", "setenv serverip 10.0.0.1\n", "booti 0x80000\n", "root\n"}, sends)
	// Every send but the first (the key) follows an expect.
	for i, c := range calls {
		if strings.HasPrefix(c, "send ") {
			require.Positive(t, i)
			assert.True(t, strings.HasPrefix(calls[i-1], "expect "), "%q follows %q", c, calls[i-1])
		}
	}
	assert.Equal(t, "expect "+boot.DefaultPrompts().Shell.String(), calls[len(calls)-1])
}

// A template error is reported before anything is done: no power switching,
// nothing sent.
func TestBootUBootTemplateError(t *testing.T) {
	tests := []struct {
		name     string
		commands []string
		wantMsg  string
	}{
		{"unknown placeholder in the boot command", []string{"tftpboot {kernel_addr} {kernel}", "booti {kernel_addr} - {dtb_addr}"},
			`u-boot command 2: unknown placeholder {dtb_addr} in "booti {kernel_addr} - {dtb_addr}" (known: kernel, kernel_addr, server_ip)`},
		{"unclosed brace in the first command", []string{"tftpboot {kernel_addr {kernel}", "booti"},
			`u-boot command 1: unclosed "{"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePower()
			err := boot.BootUBoot(ctxT(t, waitTO), p, recConsole{p}, boot.UBoot{
				Commands: tc.commands,
				Vars:     fillVars,
			})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantMsg)
			var te *boot.TemplateError
			assert.ErrorAs(t, err, &te)
			assert.Empty(t, p.Calls())
		})
	}
}

func TestBootUBootCommandError(t *testing.T) {
	tests := []struct {
		name     string
		failing  string // the command that fails, as sent
		out      string // what u-boot prints for it
		wantLine string
	}{
		{"tftp file not found", "tftpboot 0x80000 Image",
			"Using ethernet@ff3f0000 device\r\nTFTP from server 10.0.0.1; our IP address is 10.0.0.2\r\nFilename 'Image'.\r\nLoad address: 0x80000\r\nLoading: *\r\nTFTP error: 'File not found' (1)\r\nNot retrying...\r\n",
			"TFTP error: 'File not found' (1)"},
		{"unknown command", "setenv serverip 10.0.0.1", "Unknown command 'setenv' - try 'help'\r\n", "Unknown command 'setenv' - try 'help'"},
		{"bad image", "tftpboot 0x83000000 board.dtb", "Bad Linux ARM64 Image magic!\r\n", "Bad Linux ARM64 Image magic!"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePower()
			con, b := newFakeLine(t, nil)
			cmds, users := make(chan string, 16), make(chan string, 1)
			play(t, p, b, ubootBoard("=> ", cmds, func(cmd string) (string, bool) {
				if cmd == tc.failing {
					return tc.out, false
				}
				return okAnswers(cmd)
			}, kernelToLogin, users))

			err := boot.BootUBoot(ctxT(t, waitTO), p, con, boot.UBoot{Commands: ubootTFTPCommands, Vars: ubootVars})
			require.Error(t, err)
			assert.Equal(t, `u-boot: "`+tc.failing+`": `+tc.wantLine, err.Error())
			var ue *boot.UBootError
			require.ErrorAs(t, err, &ue)
			assert.Equal(t, tc.failing, ue.Command)
			assert.Equal(t, tc.wantLine, ue.Line)
			assert.Equal(t, strings.TrimSpace(strings.ReplaceAll(tc.out, "\r", "")), ue.Output)
			got := received(cmds)
			require.NotEmpty(t, got)
			assert.Equal(t, tc.failing, got[len(got)-1], "no command may be sent after the failing one")
			assert.Empty(t, received(users))
		})
	}
}

// The echo of a command is not its output: words like "abort" in it are no
// error.
func TestBootUBootEchoIsNoError(t *testing.T) {
	p := newFakePower()
	con, b := newFakeLine(t, nil)
	cmds, users := make(chan string, 16), make(chan string, 1)
	play(t, p, b, ubootBoard("=> ", cmds, okAnswers, kernelToLogin, users))
	require.NoError(t, boot.BootUBoot(ctxT(t, waitTO), p, con, boot.UBoot{
		Commands: []string{"setenv bootargs panic=abort bad_blocks=failed", "boot"},
	}))
	assert.Equal(t, []string{"setenv bootargs panic=abort bad_blocks=failed", "boot"}, received(cmds))
}

// The boot command fails and u-boot comes back to its prompt: that is an
// error at once, not a wait for a login prompt that will never come.
func TestBootUBootBootCommandFails(t *testing.T) {
	p := newFakePower()
	con, b := newFakeLine(t, nil)
	cmds, users := make(chan string, 16), make(chan string, 1)
	play(t, p, b, ubootBoard("=> ", cmds, func(cmd string) (string, bool) {
		if strings.HasPrefix(cmd, "booti ") {
			return "Bad Linux ARM64 Image magic!\r\n", false
		}
		return okAnswers(cmd)
	}, kernelToLogin, users))

	err := boot.BootUBoot(ctxT(t, waitTO), p, con, boot.UBoot{Commands: ubootTFTPCommands, Vars: ubootVars})
	require.Error(t, err)
	assert.Equal(t, `u-boot: "booti 0x80000 - 0x83000000": Bad Linux ARM64 Image magic!`, err.Error())
	var ue *boot.UBootError
	assert.ErrorAs(t, err, &ue)
}

func TestBootUBootNoInterrupt(t *testing.T) {
	p := newFakePower()
	con, b := newFakeLine(t, nil)
	sent := make(chan string, 16)
	play(t, p, b, func(b *fakeBoard) {
		// Autoboot disabled: straight to the kernel, which hangs.
		if b.print(ubootBanner+kernelLog) != nil {
			return
		}
		for {
			l, err := b.readLine()
			if err != nil {
				return
			}
			sent <- l
		}
	})
	start := time.Now()
	err := boot.BootUBoot(ctxT(t, shortTO), p, con, boot.UBoot{Commands: ubootTFTPCommands, Vars: ubootVars})
	require.Error(t, err)
	assert.Less(t, time.Since(start), shortTO+2*time.Second)
	assert.Contains(t, err.Error(), "u-boot prompt never appeared")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Empty(t, received(sent))
}

func TestBootUBootNoPromptAfterKey(t *testing.T) {
	p := newFakePower()
	con, b := newFakeLine(t, nil)
	play(t, p, b, func(b *fakeBoard) {
		_ = b.print(ubootBanner + ubootCount)
		b.drain()
	})
	err := boot.BootUBoot(ctxT(t, shortTO), p, con, boot.UBoot{Commands: ubootTFTPCommands, Vars: ubootVars})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "u-boot prompt never appeared after interrupting autoboot")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestBootUBootKernelPanic(t *testing.T) {
	p := newFakePower()
	con, b := newFakeLine(t, nil)
	cmds, users := make(chan string, 16), make(chan string, 1)
	play(t, p, b, ubootBoard("=> ", cmds, okAnswers,
		kernelLog+"[    1.5] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n", users))

	err := boot.BootUBoot(ctxT(t, waitTO), p, con, boot.UBoot{Commands: ubootTFTPCommands, Vars: ubootVars})
	require.ErrorIs(t, err, boot.ErrKernelPanic)
	assert.Contains(t, err.Error(), "Unable to mount root fs")
	assert.Len(t, received(cmds), len(ubootTFTPCommands))
}

func TestBootUBootOtherErrors(t *testing.T) {
	t.Run("no commands", func(t *testing.T) {
		p := newFakePower()
		err := boot.BootUBoot(ctxT(t, waitTO), p, recConsole{p}, boot.UBoot{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "no commands")
		assert.Empty(t, p.Calls())
	})
	t.Run("multi-line command", func(t *testing.T) {
		p := newFakePower()
		err := boot.BootUBoot(ctxT(t, waitTO), p, recConsole{p}, boot.UBoot{Commands: []string{"echo {a}", "boot"}, Vars: map[string]string{"a": "x\nreset"}})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "several lines")
		assert.Empty(t, p.Calls())
	})
	t.Run("power on fails", func(t *testing.T) {
		p := newFakePower()
		p.onErr = context.Canceled
		err := boot.BootUBoot(ctxT(t, waitTO), p, recConsole{p}, boot.UBoot{Commands: []string{"boot"}})
		require.ErrorIs(t, err, context.Canceled)
		assert.Contains(t, err.Error(), "power on")
	})
	t.Run("console closes in u-boot", func(t *testing.T) {
		p := newFakePower()
		con, b := newFakeLine(t, nil)
		play(t, p, b, func(b *fakeBoard) {
			if b.print(ubootBanner+ubootCount) != nil {
				return
			}
			if _, err := b.readLine(); err != nil {
				return
			}
			_ = b.print("\r\n=> ")
			if _, err := b.readLine(); err != nil {
				return
			}
			_ = b.out.Close()
		})
		err := boot.BootUBoot(ctxT(t, waitTO), p, con, boot.UBoot{Commands: ubootTFTPCommands, Vars: ubootVars})
		require.ErrorIs(t, err, console.ErrClosed)
		assert.Contains(t, err.Error(), `"setenv serverip 10.0.0.1"`)
	})
}
