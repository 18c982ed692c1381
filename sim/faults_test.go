package sim

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/troupe-lab/troupe/console"
	"github.com/troupe-lab/troupe/internal/lockedbuf"
)

const quiet = 300 * time.Millisecond

// expectNot checks that re does not show up within quiet.
func expectNot(t *testing.T, c *console.Console, re string) {
	t.Helper()
	_, err := c.Expect(ctxT(t, quiet), regexp.MustCompile(re))
	require.ErrorIs(t, err, context.DeadlineExceeded, "%q appeared", re)
}

func newFaultyBoard(t *testing.T, name string, f Faults) (*Board, *console.Console, *lockedbuf.Buffer) {
	t.Helper()
	b, err := New(Options{Name: name, Dir: filepath.Join(t.TempDir(), name), Faults: f})
	require.NoError(t, err)
	raw := &lockedbuf.Buffer{}
	c := console.New(b.Console(), console.Options{Raw: raw})
	t.Cleanup(func() {
		b.SetFaults(Faults{}) // PowerFail would not matter to Close, but be tidy
		assert.NoError(t, b.Close())
		_ = c.Close()
	})
	return b, c, raw
}

func token(b *Board) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sess.token
}

func pidOf(t *testing.T, out string) int {
	t.Helper()
	var pid int
	_, err := fmt.Sscanf(strings.TrimSpace(out), "%d", &pid)
	require.NoError(t, err, "output %q", out)
	return pid
}

func TestFaultBootHang(t *testing.T) {
	b, c, _ := newFaultyBoard(t, "hang", Faults{BootHang: true})
	for range 2 { // the setting persists across power cycles
		require.NoError(t, b.On(ctxT(t, waitTO)))
		expect(t, c, `Starting kernel \.\.\.\n`)
		expectNot(t, c, `Linux|login:`)
		on, err := b.State(ctxT(t, waitTO))
		require.NoError(t, err)
		assert.True(t, on)
		require.NoError(t, b.Off(ctxT(t, waitTO)))
	}
	b.SetFaults(Faults{})
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
}

func TestFaultSlowBoot(t *testing.T) {
	b, c, _ := newFaultyBoard(t, "slowboot", Faults{SlowBoot: 400 * time.Millisecond})
	require.NoError(t, b.On(ctxT(t, waitTO)))
	expect(t, c, `Run /sbin/init as init process\n`)
	start := time.Now()
	expect(t, c, `slowboot login: $`)
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
}

func TestFaultNoLoginPrompt(t *testing.T) {
	b, c, _ := newFaultyBoard(t, "nologin", Faults{NoLoginPrompt: true})
	require.NoError(t, b.On(ctxT(t, waitTO)))
	expect(t, c, `Run /sbin/init as init process\n`)
	expectNot(t, c, `login:`)
	require.NoError(t, c.Send("root\n"))
	expectNot(t, c, `root|#`)
}

func TestFaultPanicAtBoot(t *testing.T) {
	b, c, _ := newFaultyBoard(t, "panicboot", Faults{PanicAtBoot: true})
	require.NoError(t, b.On(ctxT(t, waitTO)))
	m := expect(t, c, `(?s)(.*)Kernel panic - not syncing: VFS: Unable to mount root fs\n`)
	assert.Contains(t, m[1], "Linux version")
	assert.NotContains(t, m[1], "Run /sbin/init")
	expectNot(t, c, `.`) // the board hangs: nothing more
}

func TestFaultDeployFail(t *testing.T) {
	b, _, _ := newFaultyBoard(t, "flash", Faults{DeployFail: true})
	err := b.Deploy(ctxT(t, waitTO), t.TempDir())
	require.EqualError(t, err, "deploy to flash: flash write failed (injected)")
	require.ErrorIs(t, err, ErrInjected)
	b.SetFaults(Faults{})
	require.NoError(t, b.Deploy(ctxT(t, waitTO), t.TempDir()))
}

func TestFaultPowerFail(t *testing.T) {
	b, c, _ := newFaultyBoard(t, "pdu", Faults{PowerFail: true})
	err := b.On(ctxT(t, waitTO))
	require.EqualError(t, err, "power on pdu: PDU did not answer (injected)")
	require.ErrorIs(t, err, ErrInjected)
	on, err := b.State(ctxT(t, waitTO))
	require.NoError(t, err)
	assert.False(t, on)
	expectNot(t, c, `.`)

	b.SetFaults(Faults{})
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	b.SetFaults(Faults{PowerFail: true})
	require.EqualError(t, b.Off(ctxT(t, waitTO)), "power off pdu: PDU did not answer (injected)")
	on, err = b.State(ctxT(t, waitTO))
	require.NoError(t, err)
	assert.True(t, on)
	assert.Equal(t, "still\n", run(t, b, c, "echo still"))
	b.SetFaults(Faults{})
	require.NoError(t, b.Off(ctxT(t, waitTO)))
}

func TestFaultPowerLie(t *testing.T) {
	b, c, _ := newFaultyBoard(t, "liar", Faults{PowerLie: true})
	require.NoError(t, b.On(ctxT(t, waitTO)))
	on, err := b.State(ctxT(t, waitTO))
	require.NoError(t, err)
	assert.True(t, on)
	require.NoError(t, c.Send("junk-lie\n"))
	expectNot(t, c, `.`)
	require.NoError(t, b.Off(ctxT(t, waitTO)))
	on, err = b.State(ctxT(t, waitTO))
	require.NoError(t, err)
	assert.False(t, on)

	b.SetFaults(Faults{})
	require.NoError(t, b.On(ctxT(t, waitTO)))
	assert.NotContains(t, login(t, b, c), "junk")
}

func TestFaultPowerLoss(t *testing.T) {
	b, c, _ := newFaultyBoard(t, "blackout", Faults{})
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	tok := token(b)
	sh := hostPID(t, tok, pidOf(t, run(t, b, c, "echo $$")))
	bg := hostPID(t, tok, pidOf(t, run(t, b, c, "sleep 1000 & echo $!")))
	b.PowerLoss()
	assert.ErrorIs(t, unix.Kill(bg, 0), unix.ESRCH)
	on, err := b.State(ctxT(t, waitTO))
	require.NoError(t, err)
	assert.False(t, on)
	assert.ErrorIs(t, unix.Kill(sh, 0), unix.ESRCH)
	assert.Empty(t, tokenProcs(tok))
	require.NoError(t, c.Send("echo $((6*7))\n"))
	expectNot(t, c, `42`)

	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
}

func TestFaultKernelPanic(t *testing.T) {
	b, c, _ := newFaultyBoard(t, "oops", Faults{})
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	tok := token(b)
	sh := hostPID(t, tok, pidOf(t, run(t, b, c, "echo $$")))
	bg := hostPID(t, tok, pidOf(t, run(t, b, c, "sleep 1000 & echo $!")))

	b.KernelPanic()
	expect(t, c, `\n\[  123\.456789\] Kernel panic - not syncing: Fatal exception\n`)
	assert.ErrorIs(t, unix.Kill(sh, 0), unix.ESRCH)
	assert.ErrorIs(t, unix.Kill(bg, 0), unix.ESRCH)
	assert.Empty(t, tokenProcs(tok))
	on, err := b.State(ctxT(t, waitTO))
	require.NoError(t, err)
	assert.True(t, on)
	require.NoError(t, c.Send("echo $((6*7))\n"))
	expectNot(t, c, `.`) // no echo, no login prompt, nothing
	b.KernelPanic()      // no-op

	require.NoError(t, b.Off(ctxT(t, waitTO)))
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	assert.Equal(t, "42\n", run(t, b, c, "echo $((6*7))"))
}

func TestFaultKernelPanicDuringBoot(t *testing.T) {
	b, err := New(Options{Name: "oopsboot", Dir: t.TempDir(), BootDelay: time.Minute})
	require.NoError(t, err)
	c := console.New(b.Console(), console.Options{})
	defer func() { require.NoError(t, b.Close()); _ = c.Close() }()
	require.NoError(t, b.On(ctxT(t, waitTO)))
	expect(t, c, `^\n`)
	b.KernelPanic()
	expect(t, c, `Kernel panic - not syncing: Fatal exception\n`)
	expectNot(t, c, `.`)
}

func TestFaultShellHang(t *testing.T) {
	b, c, _ := newFaultyBoard(t, "frozen", Faults{})
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	tok := token(b)
	sh := hostPID(t, tok, pidOf(t, run(t, b, c, "echo $$")))
	bg := hostPID(t, tok, pidOf(t, run(t, b, c, "sleep 1000 & echo $!")))

	b.ShellHang()
	require.NoError(t, c.Send("echo $((6*7))\n"))
	expectNot(t, c, `42`)
	for _, pid := range []int{sh, bg} {
		p, ok := readStat(pid)
		require.True(t, ok)
		assert.Equal(t, byte('T'), p.state, "pid %d", pid)
	}

	require.NoError(t, b.Off(ctxT(t, waitTO)))
	assert.ErrorIs(t, unix.Kill(sh, 0), unix.ESRCH)
	assert.ErrorIs(t, unix.Kill(bg, 0), unix.ESRCH)
	assert.Empty(t, tokenProcs(tok))

	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	assert.Equal(t, "42\n", run(t, b, c, "echo $((6*7))"))
}

func TestFaultDisconnect(t *testing.T) {
	b, c, raw := newFaultyBoard(t, "cable", Faults{})
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)

	// Output produced during the disconnect is lost. (The window is wide:
	// a board's shell yields the CPU to everything in troupe's session,
	// other test binaries included, and may run late.)
	require.NoError(t, c.Send("sleep 0.1; echo late-$((2+3))\n"))
	b.Disconnect(3 * time.Second)
	// Writes are dropped.
	require.NoError(t, c.Send("echo typed-$((3+4))\n"))
	expectNot(t, c, `late-5|typed-7`)
	require.Eventually(t, func() bool { return b.con.lostBytes() > 0 }, 3*time.Second, 10*time.Millisecond, "the board's output was lost")
	require.Eventually(t, func() bool { return !b.con.disconnected() }, waitTO, 10*time.Millisecond, "the 3 s are over")

	assert.Equal(t, "back\n", run(t, b, c, "echo back"))
	assert.NotContains(t, raw.String(), "late-5")
	assert.NotContains(t, raw.String(), "typed")

	// Forever, until power off.
	b.Disconnect(-1)
	require.NoError(t, c.Send("echo $((6*7))\n"))
	expectNot(t, c, `42`)
	require.NoError(t, b.Off(ctxT(t, waitTO)))
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
}

func TestFaultDisconnectCloseUnblocks(t *testing.T) {
	b, err := New(Options{Name: "unplug", Dir: t.TempDir()})
	require.NoError(t, err)
	c := console.New(b.Console(), console.Options{})
	b.Disconnect(-1)
	require.NoError(t, b.On(ctxT(t, waitTO)))
	// The console's reader is at work through the disconnect: the boot
	// output it read was lost.
	require.Eventually(t, func() bool { return b.con.lostBytes() > 0 }, waitTO, 10*time.Millisecond)
	start := time.Now()
	require.NoError(t, c.Close())
	assert.Less(t, time.Since(start), time.Second)
	require.NoError(t, b.Close())
}

func TestFaultNoiseOnBoard(t *testing.T) {
	b, c, raw := newFaultyBoard(t, "noisy", Faults{NoiseRate: 2000, Seed: 7})
	require.NoError(t, b.On(ctxT(t, waitTO)))
	expect(t, c, `\[    0\.000000\] Linux version 6\.1\.0-troupe-sim`)
	expect(t, c, `noisy login: $`)
	require.NoError(t, c.Send("root\n"))
	expect(t, c, prompt("noisy")+`$`)
	require.NoError(t, c.Send(`echo "<X""42>"`+"\n"))
	expect(t, c, `<X42>\n`)
	expect(t, c, prompt("noisy")+`$`)

	// Every boot line arrived intact, after noise at its start.
	got := strings.Split(raw.String(), "\n")
	noisy := 0
	for _, want := range b.bootLines()[1:8] {
		found := false
		for _, l := range got {
			if strings.HasSuffix(l, want+"\r") {
				found = true
				if len(l) > len(want)+1 {
					noisy++
				}
			}
		}
		assert.True(t, found, "boot line %q", want)
	}
	assert.Positive(t, noisy)
}

// pipeConn is a console source fed through an io.Pipe.
type pipeConn struct{ *io.PipeReader }

func (pipeConn) Write(p []byte) (int, error) { return len(p), nil }

// feed runs src through a faultConn configured with f, writing each chunk
// after gap, and returns what a reader gets.
func feed(t *testing.T, f Faults, chunks []string, gap time.Duration) []byte {
	t.Helper()
	pr, pw := io.Pipe()
	fc := newFaultConn(pipeConn{pr})
	fc.setFaults(f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, s := range chunks {
			if gap > 0 {
				time.Sleep(gap)
			}
			if _, err := pw.Write([]byte(s)); err != nil {
				return
			}
		}
		_ = pw.Close()
	}()
	out, err := io.ReadAll(fc)
	require.NoError(t, err)
	<-done
	require.NoError(t, fc.Close())
	return out
}

func lines(n int) []string {
	var ls []string
	for i := range n {
		ls = append(ls, fmt.Sprintf("line %03d <X%d> the quick brown fox\r\n", i, i))
	}
	return ls
}

func TestFaultNoiseOnlyAtLineStarts(t *testing.T) {
	src := lines(40)
	var noise [2]string
	for run := range 2 {
		out := feed(t, Faults{NoiseRate: 1000, Seed: 42}, src, 3*time.Millisecond)
		got := strings.Split(string(out), "\n")
		require.Len(t, got, len(src)+1)
		var all strings.Builder
		for i, l := range got[:len(src)] {
			want := strings.TrimSuffix(src[i], "\n")
			require.True(t, strings.HasSuffix(l, want), "line %d: %q", i, l)
			n := strings.TrimSuffix(l, want)
			if i == 0 {
				assert.Empty(t, n, "noise before the first line start")
			}
			assert.NotContains(t, n, "<")
			assert.NotContains(t, n, ">")
			assert.NotContains(t, n, "\x1b")
			all.WriteString(n)
		}
		all.WriteString(got[len(src)]) // noise after the last '\n'
		noise[run] = all.String()
		assert.Greater(t, len(noise[run]), 20)
	}
	// Same seed: the same noise bytes (their count depends on timing).
	k := min(len(noise[0]), len(noise[1]))
	assert.Equal(t, noise[0][:k], noise[1][:k])
}

func TestFaultDropDeterministic(t *testing.T) {
	src := lines(50)
	in := strings.Join(src, "")
	a := feed(t, Faults{DropProb: 0.5, Seed: 1}, src, 0)
	// Different chunking, same bytes: same decisions.
	b := feed(t, Faults{DropProb: 0.5, Seed: 1}, []string{in[:7], in[7:1000], in[1000:]}, 0)
	other := feed(t, Faults{DropProb: 0.5, Seed: 2}, src, 0)
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, other)
	assert.Greater(t, len(a), len(in)/4)
	assert.Less(t, len(a), len(in)*3/4)
	// What is left is a subsequence of the input.
	j := 0
	for i := 0; i < len(in) && j < len(a); i++ {
		if in[i] == a[j] {
			j++
		}
	}
	assert.Equal(t, len(a), j)

	assert.Equal(t, in, string(feed(t, Faults{Seed: 1}, src, 0)))
}

func TestFaultBaud(t *testing.T) {
	in := strings.Repeat("x", 1999) + "\n"
	start := time.Now()
	out := feed(t, Faults{Baud: 9600}, []string{in}, 0)
	d := time.Since(start)
	assert.Equal(t, in, string(out))
	assert.GreaterOrEqual(t, d, 1500*time.Millisecond) // 2000 bytes at 960 B/s: ~2.1 s
	assert.Less(t, d, 5*time.Second)
}

func TestFaultBaudCloseUnblocks(t *testing.T) {
	b, c, _ := newFaultyBoard(t, "slowline", Faults{Baud: 300})
	require.NoError(t, b.On(ctxT(t, waitTO)))
	expect(t, c, `U-Boot`)
	start := time.Now()
	require.NoError(t, c.Close())
	assert.Less(t, time.Since(start), time.Second)
}
