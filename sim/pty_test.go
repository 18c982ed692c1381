package sim

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/console"
)

// TestShellsOnQuietTerminal: an interactive shell started on a terminal in
// modeShellQuiet (the console's shell after the login) echoes nothing of
// what is typed, whatever /bin/sh is: dash and busybox's ash leave the
// terminal as they find it, bash's readline echoes itself only if the
// terminal echoed when it started. In modeShell each of them echoes: the
// test can tell.
func TestShellsOnQuietTerminal(t *testing.T) {
	shells := map[string][]string{
		"dash":    {"dash", "-i"},
		"busybox": {"busybox", "sh", "-i"},
		"bash":    {"bash", "--norc", "--noprofile", "-i"},
	}
	for name, argv := range shells {
		for _, m := range []struct {
			mode termMode
			echo bool
		}{{modeShellQuiet, false}, {modeShell, true}} {
			t.Run(name+map[bool]string{true: " echo", false: " quiet"}[m.echo], func(t *testing.T) {
				path, err := exec.LookPath(argv[0])
				require.NoError(t, err, "%s is one of the shells a board may have (Makefile APT_PKGS)", argv[0])
				ptm, pts, err := openPTY()
				require.NoError(t, err)
				require.NoError(t, setMode(pts, m.mode))
				cmd := exec.Command(path, argv[1:]...)
				cmd.Env = []string{"PS1=$ ", "TERM=dumb", "HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}
				cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
				cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
				require.NoError(t, cmd.Start())
				_ = pts.Close()
				c := console.New(ptm, console.Options{})
				t.Cleanup(func() {
					_ = cmd.Process.Kill()
					_ = cmd.Wait()
					_ = c.Close()
				})
				expect(t, c, `\$ $`)
				require.NoError(t, c.Send("echo typed-$((6*7))\n"))
				out := expect(t, c, `(?s)^(.*?)typed-42\n`)
				assert.Equal(t, m.echo, strings.Contains(out[1], "echo typed-$((6*7))"), "before the output: %q", out[1])
				expect(t, c, `\$ $`)
				// Typed once the shell runs the command (a line-editing shell
				// reads ahead with echo off while it edits).
				require.NoError(t, c.Send("echo ready-$((6*7)); read -r x; echo got-$x\n"))
				expect(t, c, `ready-42\n`)
				require.NoError(t, c.Send("reply-line\n"))
				out = expect(t, c, `(?s)^(.*?)got-reply-line\n`)
				assert.Equal(t, m.echo, strings.Contains(out[1], "reply-line"), "before the output: %q", out[1])
			})
		}
	}
}
