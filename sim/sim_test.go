package sim

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/troupe-lab/troupe/console"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitTO = 10 * time.Second

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newBoard(t *testing.T, name string) (*Board, *console.Console) {
	t.Helper()
	b, err := New(Options{Name: name, Dir: filepath.Join(t.TempDir(), name)})
	require.NoError(t, err)
	c := console.New(b.Console(), console.Options{})
	t.Cleanup(func() {
		assert.NoError(t, b.Close())
		_ = c.Close()
	})
	return b, c
}

func expect(t *testing.T, c *console.Console, re string) []string {
	t.Helper()
	m, err := c.Expect(ctxT(t, waitTO), regexp.MustCompile(re))
	require.NoError(t, err)
	return m
}

func prompt(name string) string { return regexp.QuoteMeta("root@" + name + ":~# ") }

// login waits for the login prompt and logs in; returns everything printed
// before the login prompt.
func login(t *testing.T, b *Board, c *console.Console) string {
	t.Helper()
	m := expect(t, c, `(?s)(.*)\n`+regexp.QuoteMeta(b.o.Name)+` login: $`)
	require.NoError(t, c.Send("root\n"))
	expect(t, c, prompt(b.o.Name))
	return m[1]
}

var seq atomic.Int64

// run executes cmd in the board's shell and returns its output. The
// markers around it are computed by the shell, so that the command line
// echoed (by a session's terminal; the console's shell has echo off) never
// matches them.
func run(t *testing.T, b *Board, c *console.Console, cmd string) string {
	t.Helper()
	n := seq.Add(1)
	require.NoError(t, c.Send(fmt.Sprintf("echo @[$((%d))]@; %s; echo @@$((%d+1))@@\n", n, cmd, n)))
	m := expect(t, c, fmt.Sprintf(`(?s)@\[%d\]@\n(.*?)@@%d@@\n`, n, n+1))
	expect(t, c, prompt(b.o.Name))
	return m[1]
}

func TestBootLoginAndShell(t *testing.T) {
	b, c := newBoard(t, "sim-0")
	on, err := b.State(ctxT(t, waitTO))
	require.NoError(t, err)
	assert.False(t, on)

	require.NoError(t, b.On(ctxT(t, waitTO)))
	require.NoError(t, b.On(ctxT(t, waitTO))) // no-op
	on, err = b.State(ctxT(t, waitTO))
	require.NoError(t, err)
	assert.True(t, on)

	for _, re := range []string{
		`U-Boot 2024\.01-troupe-sim`, `DRAM: 1 GiB`, `Hit any key to stop autoboot: 0`,
		`Starting kernel \.\.\.`, `\[    0\.000000\] Linux version 6\.1\.0-troupe-sim`,
		`\[    0\.912345\] Run /sbin/init as init process\n`, `\nsim-0 login: $`,
	} {
		expect(t, c, re)
	}
	require.NoError(t, c.Send("root\n"))
	expect(t, c, `^root\n`) // echoed by the tty
	expect(t, c, prompt("sim-0"))
	assert.Equal(t, "hello world\n", run(t, b, c, "echo hello world"))
	assert.Equal(t, "3\n", run(t, b, c, "echo $((1+2))"))

	require.NoError(t, b.Off(ctxT(t, waitTO)))
	require.NoError(t, b.Off(ctxT(t, waitTO))) // no-op
	on, err = b.State(ctxT(t, waitTO))
	require.NoError(t, err)
	assert.False(t, on)
}

// TestConsoleShellEcho: the console's shell has echo off from the login
// on (the login name is still echoed), sandboxed or not: neither a command
// typed into it nor a line a program reads from its terminal (as a
// MultiNode reply is) is echoed back. With KeepEcho (troupe simboard) it
// echoes, as a real board's does.
func TestConsoleShellEcho(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		echo bool
	}{
		{"sandboxed", Options{}, false},
		{"unsandboxed", Options{Unsandboxed: true}, false},
		{"keep echo", Options{KeepEcho: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Name, tc.o.Dir = "echo", filepath.Join(t.TempDir(), "echo")
			b, err := New(tc.o)
			require.NoError(t, err)
			c := console.New(b.Console(), console.Options{})
			t.Cleanup(func() {
				assert.NoError(t, b.Close())
				_ = c.Close()
			})
			assert.Equal(t, !tc.echo, b.EchoOff())
			require.NoError(t, b.On(ctxT(t, waitTO)))
			expect(t, c, `\necho login: $`)
			require.NoError(t, c.Send("root\n"))
			expect(t, c, `^root\n`) // the login name is echoed
			expect(t, c, prompt("echo"))

			require.NoError(t, c.Send("echo typed-$((6*7))\n"))
			m := expect(t, c, `(?s)^(.*?)typed-42\n`)
			assert.Equal(t, tc.echo, strings.Contains(m[1], "echo typed-$((6*7))"), "before the command's output: %q", m[1])
			expect(t, c, prompt("echo"))

			// Typed once the shell runs the command (a line-editing shell
			// reads ahead with echo off while it edits).
			require.NoError(t, c.Send("echo ready-$((6*7)); read -r x; echo got-$x\n"))
			expect(t, c, `ready-42\n`)
			require.NoError(t, c.Send("reply-line\n"))
			m = expect(t, c, `(?s)^(.*?)got-reply-line\n`)
			assert.Equal(t, tc.echo, strings.Contains(m[1], "reply-line"), "before the command's output: %q", m[1])
			expect(t, c, prompt("echo"))

			// A shell started again after the last one exited (a fresh
			// login) has echo off too.
			require.NoError(t, c.Send("exit\n"))
			expect(t, c, `echo login: $`)
			require.NoError(t, c.Send("root\n"))
			expect(t, c, `^root\n`)
			expect(t, c, prompt("echo"))
			require.NoError(t, c.Send("echo again-$((6*7))\n"))
			m = expect(t, c, `(?s)^(.*?)again-42\n`)
			assert.Equal(t, tc.echo, strings.Contains(m[1], "echo again-$((6*7))"), "before the command's output: %q", m[1])
		})
	}
}

func TestCleanEnvironmentAndSandbox(t *testing.T) {
	t.Setenv("TROUPE_HARNESS_SECRET", "leak")
	b, c := newBoard(t, "envboard")
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)

	env := run(t, b, c, "env")
	assert.NotContains(t, env, "TROUPE_HARNESS_SECRET")
	root := b.Root()
	for _, kv := range []string{
		"HOME=/root", "TMPDIR=/tmp", "TERM=dumb", "USER=root", "SHELL=/bin/sh", "LANG=C.UTF-8",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LAVA_MULTI_NODE_CACHE=/tmp/lava_multi_node_cache.txt",
	} {
		assert.Contains(t, strings.Split(env, "\n"), kv)
	}
	assert.Regexp(t, `(?m)^TROUPE_SIM_TOKEN=[0-9a-f]{32}$`, env)
	assert.Equal(t, "/root\n", run(t, b, c, "pwd"))
	assert.DirExists(t, filepath.Join(root, "tmp"))
}

func TestBoardsAreIsolated(t *testing.T) {
	a, ca := newBoard(t, "iso-a")
	b, cb := newBoard(t, "iso-b")
	require.NoError(t, a.On(ctxT(t, waitTO)))
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, a, ca)
	login(t, b, cb)
	assert.NotEqual(t, a.Root(), b.Root())

	assert.Equal(t, "ok\n", run(t, a, ca, `echo a > "$HOME/home.txt" && echo t > "$TMPDIR/tmp.txt" && echo ok`))
	assert.FileExists(t, filepath.Join(a.Root(), "home.txt"))
	assert.FileExists(t, filepath.Join(a.Root(), "tmp", "tmp.txt"))
	out := run(t, b, cb, `ls "$HOME/home.txt" "$TMPDIR/tmp.txt" home.txt >/dev/null 2>&1; echo rc=$?`)
	assert.NotEqual(t, "rc=0\n", out)
	assert.NoFileExists(t, filepath.Join(b.Root(), "home.txt"))
}

// tokenProcs lists pids whose environment carries token.
func tokenProcs(token string) map[int]string {
	needle := []byte("\x00" + tokenVar + "=" + token + "\x00")
	ps := map[int]string{}
	for _, p := range listProcs() {
		if environHas(p.pid, needle) {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.pid))
			ps[p.pid] = strings.TrimSpace(string(comm))
		}
	}
	return ps
}

func countSleeps(ps map[int]string) int {
	n := 0
	for _, comm := range ps {
		if comm == "sleep" {
			n++
		}
	}
	return n
}

func TestOffKillsEverything(t *testing.T) {
	b, c := newBoard(t, "killer")
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	b.mu.Lock()
	token := b.sess.token
	b.mu.Unlock()

	var pids []int
	for _, cmd := range []string{"sleep 1000 &", "setsid sleep 1000 &", "(trap '' HUP; sleep 1000) &"} {
		out := run(t, b, c, cmd+" echo PID=$!")
		var pid int
		_, err := fmt.Sscanf(strings.TrimSpace(out[strings.LastIndex(out, "PID="):]), "PID=%d", &pid)
		require.NoError(t, err, "output %q", out)
		if h := lookupHostPID(token, pid); h != 0 { // 0: gone already (setsid forked and exited)
			pids = append(pids, h)
		}
	}
	// The sleeps are exec'd asynchronously; wait (bounded) until all three exist.
	require.Eventually(t, func() bool { return countSleeps(tokenProcs(token)) >= 3 }, waitTO, 10*time.Millisecond)
	for pid := range tokenProcs(token) {
		pids = append(pids, pid)
	}
	// Without the token, in a session of its own: only its PID namespace
	// tells it belongs to the board.
	run(t, b, c, "setsid env -i sleep 1000 & echo started")
	sh := hostPID(t, token, pidOf(t, run(t, b, c, "echo $$")))
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", sh))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(inPIDNamespace(ns)) >= 6 }, waitTO, 10*time.Millisecond,
		"init, shell, 3 sleeps and the env -i one")

	require.NoError(t, b.Off(ctxT(t, waitTO)))
	for _, pid := range pids {
		assert.ErrorIs(t, unix.Kill(pid, 0), unix.ESRCH, "pid %d survived power off", pid)
	}
	assert.Empty(t, tokenProcs(token))
	assert.Empty(t, inPIDNamespace(ns), "processes of the board's PID namespace survived power off")
}

// hostPID is the pid on the host of the board process that has pid nsPid
// in its sandbox (found among the processes carrying token).
func hostPID(t *testing.T, token string, nsPid int) int {
	t.Helper()
	host := 0
	require.Eventually(t, func() bool {
		host = lookupHostPID(token, nsPid)
		return host != 0
	}, waitTO, 10*time.Millisecond, "no process of pid %d in the sandbox", nsPid)
	return host
}

func lookupHostPID(token string, nsPid int) int {
	for pid := range tokenProcs(token) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "NSpid:" && f[len(f)-1] == strconv.Itoa(nsPid) {
				return pid
			}
		}
	}
	return 0
}

// inPIDNamespace lists the live (not zombie) processes in PID namespace ns
// ("pid:[inode]").
func inPIDNamespace(ns string) []int {
	var pids []int
	for _, p := range listProcs() {
		if p.state == 'Z' || p.state == 'X' {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p.pid)); err == nil && l == ns {
			pids = append(pids, p.pid)
		}
	}
	return pids
}

func TestPowerCycle(t *testing.T) {
	b, c := newBoard(t, "cycler")
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	tok1 := run(t, b, c, "echo $TROUPE_SIM_TOKEN")
	require.NoError(t, b.Off(ctxT(t, waitTO)))

	// While off nothing is echoed, and typed input is dropped at power on.
	c.Discard()
	require.NoError(t, c.Send("junk-while-off\n"))
	_, err := c.Expect(ctxT(t, 100*time.Millisecond), regexp.MustCompile(`junk`))
	require.ErrorIs(t, err, context.DeadlineExceeded)

	require.NoError(t, b.On(ctxT(t, waitTO)))
	boot := login(t, b, c)
	assert.Contains(t, boot, "U-Boot 2024.01-troupe-sim")
	assert.NotContains(t, boot, "junk")
	tok2 := run(t, b, c, "echo $TROUPE_SIM_TOKEN")
	assert.NotEqual(t, tok1, tok2)
	assert.NotContains(t, run(t, b, c, "true"), "not found")
}

func TestShellExitReturnsToLogin(t *testing.T) {
	b, c := newBoard(t, "getty")
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	require.NoError(t, c.Send("exit\n"))
	expect(t, c, `\ngetty login: $`)
	require.NoError(t, c.Send("root\n"))
	expect(t, c, prompt("getty"))
	assert.Equal(t, "again\n", run(t, b, c, "echo again"))
}

func TestOffDuringBootIsPrompt(t *testing.T) {
	b, err := New(Options{Name: "slow", Dir: t.TempDir(), BootDelay: time.Minute})
	require.NoError(t, err)
	c := console.New(b.Console(), console.Options{})
	defer func() { require.NoError(t, b.Close()); _ = c.Close() }()
	require.NoError(t, b.On(ctxT(t, waitTO)))
	expect(t, c, `^\n`) // the first (empty) line of the boot log; the next one is 3s away
	start := time.Now()
	require.NoError(t, b.Off(ctxT(t, waitTO)))
	assert.Less(t, time.Since(start), 2*time.Second)
}

func TestCloseIdempotent(t *testing.T) {
	b, err := New(Options{Name: "closer", Dir: t.TempDir()})
	require.NoError(t, err)
	require.NoError(t, b.On(ctxT(t, waitTO)))
	require.NoError(t, b.Close())
	require.NoError(t, b.Close())
	require.ErrorIs(t, b.On(ctxT(t, waitTO)), ErrClosed)
	_, err = b.State(ctxT(t, waitTO))
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, b.Off(ctxT(t, waitTO)))
}

func TestNewNeedsDir(t *testing.T) {
	_, err := New(Options{Name: "x"})
	require.Error(t, err)
}

// --- Deploy ---

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func writeTar(t *testing.T, path string, gz bool, entries []entry) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Size: int64(len(e.body)), Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		require.NoError(t, tw.WriteHeader(h))
		if e.typ == tar.TypeReg {
			_, err := tw.Write([]byte(e.body))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	data := buf.Bytes()
	if gz {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		_, err := zw.Write(data)
		require.NoError(t, err)
		require.NoError(t, zw.Close())
		data = zb.Bytes()
	}
	require.NoError(t, os.WriteFile(path, data, 0o644))
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	require.NoError(t, err)
	return fi.Mode()
}

func TestDeployDirectory(t *testing.T) {
	b, err := New(Options{Name: "dep", Dir: t.TempDir()})
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Close()) }()
	ctx := ctxT(t, waitTO)

	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "usr", "bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "usr", "bin", "tool"), []byte("#!/bin/sh\n"), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(src, "readme"), []byte("hi"), 0o600))
	require.NoError(t, os.Symlink("usr/bin/tool", filepath.Join(src, "tool-link")))
	require.NoError(t, os.Chmod(filepath.Join(src, "usr"), 0o711))

	require.NoError(t, b.Deploy(ctx, ""))
	require.NoError(t, b.Deploy(ctx, src))
	root := b.Root()
	assert.Equal(t, os.FileMode(0o750), mode(t, filepath.Join(root, "usr", "bin", "tool")).Perm())
	assert.Equal(t, os.FileMode(0o600), mode(t, filepath.Join(root, "readme")).Perm())
	assert.Equal(t, os.FileMode(0o711), mode(t, filepath.Join(root, "usr")).Perm())
	target, err := os.Readlink(filepath.Join(root, "tool-link"))
	require.NoError(t, err)
	assert.Equal(t, "usr/bin/tool", target)
	require.NoError(t, b.Deploy(ctx, src)) // redeploy over itself

	err = b.Deploy(ctx, filepath.Join(src, "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.Contains(t, err.Error(), "missing")
	err = b.Deploy(ctx, filepath.Join(src, "readme"))
	require.ErrorContains(t, err, "not a directory, tar or tar.gz image")
}

func TestDeployTar(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			b, err := New(Options{Name: "tar", Dir: t.TempDir()})
			require.NoError(t, err)
			defer func() { require.NoError(t, b.Close()) }()
			img := filepath.Join(t.TempDir(), "rootfs.img") // no telling extension: detected by content
			writeTar(t, img, gz, []entry{
				{name: "./", typ: tar.TypeDir, mode: 0o755},
				{name: "./etc/", typ: tar.TypeDir, mode: 0o750},
				{name: "./etc/hostname", typ: tar.TypeReg, mode: 0o644, body: "board\n"},
				{name: "bin/run", typ: tar.TypeReg, mode: 0o4755, body: "#!/bin/sh\n"},
				{name: "bin/sh", typ: tar.TypeSymlink, link: "/bin/dash"},
				{name: "bin/run2", typ: tar.TypeLink, link: "bin/run"},
			})
			require.NoError(t, b.Deploy(ctxT(t, waitTO), img))
			root := b.Root()
			body, err := os.ReadFile(filepath.Join(root, "etc", "hostname"))
			require.NoError(t, err)
			assert.Equal(t, "board\n", string(body))
			assert.Equal(t, os.FileMode(0o750), mode(t, filepath.Join(root, "etc")).Perm())
			m := mode(t, filepath.Join(root, "bin", "run"))
			assert.Equal(t, os.FileMode(0o755), m.Perm())
			assert.NotZero(t, m&os.ModeSetuid)
			assert.NotZero(t, mode(t, filepath.Join(root, "bin", "sh"))&os.ModeSymlink)
			assert.FileExists(t, filepath.Join(root, "bin", "run2"))
		})
	}
}

func TestDeployRejectsEscapes(t *testing.T) {
	outside := t.TempDir()
	for name, entries := range map[string][]entry{
		"../evil":      {{name: "../evil", typ: tar.TypeReg, mode: 0o644, body: "x"}},
		"a/../../evil": {{name: "a/../../evil", typ: tar.TypeReg, mode: 0o644, body: "x"}},
		"/abs/evil":    {{name: "/abs/evil", typ: tar.TypeReg, mode: 0o644, body: "x"}},
		"link/evil": {
			{name: "link", typ: tar.TypeSymlink, link: outside},
			{name: "link/evil", typ: tar.TypeReg, mode: 0o644, body: "x"},
		},
		"rel/evil": {
			{name: "rel", typ: tar.TypeSymlink, link: "../../../../../../../../" + outside},
			{name: "rel/evil", typ: tar.TypeReg, mode: 0o644, body: "x"},
		},
		"hard": {{name: "hard", typ: tar.TypeLink, link: "../../etc/passwd"}},
	} {
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			b, err := New(Options{Name: "esc", Dir: t.TempDir()})
			require.NoError(t, err)
			defer func() { require.NoError(t, b.Close()) }()
			img := filepath.Join(t.TempDir(), "evil.tar")
			writeTar(t, img, false, entries)
			err = b.Deploy(ctxT(t, waitTO), img)
			require.Error(t, err)
			assert.Contains(t, err.Error(), fmt.Sprintf("%q", name))
			assert.NoFileExists(t, filepath.Join(outside, "evil"))
			assert.NoFileExists(t, filepath.Join(filepath.Dir(b.Root()), "evil"))
		})
	}
}

// TestMultiNodeChannel: a side channel asked for before a power-on is the
// shells' fd 8 (named by TROUPE_MN_FD), reaches troupe's end and nothing
// else, and ends with that power-on; the next power-on has none unless
// asked for again.
func TestMultiNodeChannel(t *testing.T) {
	b, c := newBoard(t, "mnboard")
	ch, err := b.OpenMultiNodeChannel()
	require.NoError(t, err)
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	assert.Equal(t, "8 socket\n", run(t, b, c, `[ -S /proc/self/fd/8 ] && echo "$TROUPE_MN_FD socket"`))
	// a process of the board writes a line; troupe reads it and answers
	assert.Equal(t, "", run(t, b, c, `sh -c 'echo hello >&8'`))
	line := make([]byte, 64)
	n, err := ch.Read(line)
	require.NoError(t, err)
	assert.Equal(t, "hello\n", string(line[:n]))
	_, err = ch.Write([]byte("answer\n"))
	require.NoError(t, err)
	assert.Equal(t, "answer\n", run(t, b, c, `read -r a <&8; echo "$a"`))

	require.NoError(t, b.Off(ctxT(t, waitTO)))
	_, err = ch.Read(line)
	assert.Error(t, err, "power off closed the channel")

	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	assert.Equal(t, "none\n", run(t, b, c, `[ -e /proc/self/fd/8 ] || [ -n "$TROUPE_MN_FD" ] || echo none`))
}
