package boot_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/troupe-lab/troupe/boot"
	"github.com/troupe-lab/troupe/console"
	"github.com/troupe-lab/troupe/sim"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	waitTO  = 10 * time.Second       // for things that must happen
	shortTO = 300 * time.Millisecond // for things that must not happen
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// fakePower is a power switch that records calls and signals power-on.
type fakePower struct {
	offErr, onErr, stateErr error
	lie                     bool // State reports off after On

	mu    sync.Mutex
	on    bool
	calls []string
	onCh  chan struct{} // closed on the first successful On
	once  sync.Once
}

func newFakePower() *fakePower { return &fakePower{onCh: make(chan struct{})} }

func (p *fakePower) record(c string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, c)
}

func (p *fakePower) Off(context.Context) error {
	p.record("off")
	if p.offErr != nil {
		return p.offErr
	}
	p.mu.Lock()
	p.on = false
	p.mu.Unlock()
	return nil
}

func (p *fakePower) On(context.Context) error {
	p.record("on")
	if p.onErr != nil {
		return p.onErr
	}
	p.mu.Lock()
	p.on = true
	p.mu.Unlock()
	p.once.Do(func() { close(p.onCh) })
	return nil
}

func (p *fakePower) State(context.Context) (bool, error) {
	p.record("state")
	if p.stateErr != nil {
		return false, p.stateErr
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.on && !p.lie, nil
}

func (p *fakePower) Calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls...)
}

// pipeConsole is the harness side of a fake serial line.
type pipeConsole struct {
	r *io.PipeReader // board → harness
	w *io.PipeWriter // harness → board
}

func (c pipeConsole) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c pipeConsole) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c pipeConsole) Close() error {
	_ = c.w.Close()
	return c.r.Close()
}

// fakeBoard is the board side of the fake serial line, played by a test goroutine.
type fakeBoard struct {
	out *io.PipeWriter // board → harness
	in  *bufio.Reader  // harness → board
	inR *io.PipeReader
}

func (b *fakeBoard) print(s string) error {
	_, err := io.WriteString(b.out, s)
	return err
}

func (b *fakeBoard) readLine() (string, error) { return b.in.ReadString('\n') }

// drain swallows everything the harness sends, until the line closes.
func (b *fakeBoard) drain() { _, _ = io.Copy(io.Discard, b.inR) }

// newFakeLine returns a console over a pipe pair and the board's side of it.
// Cleanup closes the console (which ends the board's reads and writes) and
// waits for the board goroutine started with play.
func newFakeLine(t *testing.T, onLine func(string)) (*console.Console, *fakeBoard) {
	t.Helper()
	hr, bw := io.Pipe()
	br, hw := io.Pipe()
	c := console.New(pipeConsole{r: hr, w: hw}, console.Options{OnLine: onLine})
	t.Cleanup(func() {
		_ = bw.Close()
		_ = br.Close()
		assert.NoError(t, c.Close())
	})
	return c, &fakeBoard{out: bw, in: bufio.NewReader(br), inR: br}
}

// play runs the board's behaviour in a goroutine once the power is on and
// waits for it at cleanup. Errors from the pipe after the test ends are
// expected and ignored.
func play(t *testing.T, p *fakePower, b *fakeBoard, fn func(b *fakeBoard)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-p.onCh:
			fn(b)
		case <-ctx.Done():
		}
	}()
	// Registered after newFakeLine's cleanup, so it runs before it: cancel
	// the wait for power-on, close the board's end, then wait.
	t.Cleanup(func() {
		cancel()
		_ = b.out.Close()
		_ = b.inR.Close()
		select {
		case <-done:
		case <-time.After(waitTO):
			t.Error("fake board goroutine did not stop")
		}
	})
}

// loginBoard prints a boot log and a login prompt, reports the user name it
// was sent and prints a shell prompt.
func loginBoard(users chan<- string) func(b *fakeBoard) {
	return func(b *fakeBoard) {
		if b.print("U-Boot 2024.01\r\nStarting kernel ...\r\n\r\nfake login: ") != nil {
			return
		}
		u, err := b.readLine()
		if err != nil {
			return
		}
		users <- u
		_ = b.print("root@fake:~# ")
		b.drain()
	}
}

func TestBootLogsIn(t *testing.T) {
	tests := []struct {
		name    string
		prompts boot.Prompts
		want    string
	}{
		{"default prompts", boot.DefaultPrompts(), "root\n"},
		{"custom user", boot.Prompts{Login: regexp.MustCompile(`login: $`), User: "tester", Shell: regexp.MustCompile(`~# $`)}, "tester\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePower()
			con, b := newFakeLine(t, nil)
			users := make(chan string, 1)
			play(t, p, b, loginBoard(users))

			require.NoError(t, boot.Boot(ctxT(t, waitTO), p, con, tc.prompts))
			select {
			case u := <-users:
				assert.Equal(t, tc.want, u)
			default:
				t.Fatal("Boot returned but the board never received a user name")
			}
			assert.Equal(t, []string{"off", "on", "state"}, p.Calls())
		})
	}
}

// recConsole records calls in the same log as the power switch.
type recConsole struct {
	p *fakePower
}

func (c recConsole) Expect(_ context.Context, re *regexp.Regexp) ([]string, error) {
	c.p.record("expect " + re.String())
	return []string{""}, nil
}

func (c recConsole) Send(s string) error {
	c.p.record("send " + s)
	return nil
}

func (c recConsole) Discard() { c.p.record("discard") }

func TestBootOrder(t *testing.T) {
	p := newFakePower()
	pr := boot.DefaultPrompts()
	require.NoError(t, boot.Boot(ctxT(t, waitTO), p, recConsole{p}, pr))
	assert.Equal(t, []string{
		"off", "discard", "on", "state",
		"expect (" + pr.Login.String() + `)|(Kernel panic - not syncing[^\n]*\n)`, "send root\n", "expect " + pr.Shell.String(),
	}, p.Calls())
}

func TestBootErrors(t *testing.T) {
	errRelay := errors.New("relay stuck")
	tests := []struct {
		name    string
		power   func(p *fakePower)
		board   func(b *fakeBoard)
		ctxTO   time.Duration
		wantIs  error
		wantMsg string
	}{
		{
			name:    "power on fails",
			power:   func(p *fakePower) { p.onErr = errRelay },
			wantIs:  errRelay,
			wantMsg: "power on",
		},
		{
			name:    "power off fails",
			power:   func(p *fakePower) { p.offErr = errRelay },
			wantIs:  errRelay,
			wantMsg: "power off",
		},
		{
			name:    "power state fails",
			power:   func(p *fakePower) { p.stateErr = errRelay },
			wantIs:  errRelay,
			wantMsg: "power state",
		},
		{
			name:    "power lie",
			power:   func(p *fakePower) { p.lie = true },
			wantMsg: "power on",
		},
		{
			name: "no login prompt",
			board: func(b *fakeBoard) {
				_ = b.print("U-Boot 2024.01\r\nStarting kernel ...\r\n[    0.5] Run /sbin/init as init process\r\n")
				b.drain()
			},
			ctxTO:   shortTO,
			wantIs:  context.DeadlineExceeded,
			wantMsg: "login prompt",
		},
		{
			name: "no shell prompt",
			board: func(b *fakeBoard) {
				if b.print("fake login: ") != nil {
					return
				}
				_, _ = b.readLine()
				_ = b.print("Login incorrect\r\n")
				b.drain()
			},
			ctxTO:   shortTO,
			wantIs:  context.DeadlineExceeded,
			wantMsg: "shell prompt",
		},
		{
			name: "console closes during boot",
			board: func(b *fakeBoard) {
				_ = b.print("U-Boot 2024.01\r\n")
				_ = b.out.Close()
			},
			wantIs:  console.ErrClosed,
			wantMsg: "login prompt",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePower()
			if tc.power != nil {
				tc.power(p)
			}
			con, b := newFakeLine(t, nil)
			if tc.board != nil {
				play(t, p, b, tc.board)
			}
			d := tc.ctxTO
			if d == 0 {
				d = waitTO
			}
			start := time.Now()
			err := boot.Boot(ctxT(t, d), p, con, boot.DefaultPrompts())
			require.Error(t, err)
			assert.Less(t, time.Since(start), d+2*time.Second, "Boot must return soon after its context ends")
			if tc.wantIs != nil {
				assert.ErrorIs(t, err, tc.wantIs)
			}
			assert.Contains(t, err.Error(), tc.wantMsg)
		})
	}
}

// Text printed before the power cycle (a login prompt left over from the
// previous boot) must not satisfy the login expect: the board here stays
// dead after power-on, so Boot must fail waiting for the login prompt and
// never type the user name.
func TestBootIgnoresStaleLoginPrompt(t *testing.T) {
	p := newFakePower()
	con, b := newFakeLine(t, nil)
	sent := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The board prints a stale prompt, then only listens.
		_ = b.print("STALE old login: ")
		l, err := b.readLine()
		if err == nil {
			sent <- l
		}
		b.drain()
	}()
	t.Cleanup(func() {
		_ = b.out.Close()
		_ = b.inR.Close()
		select {
		case <-done:
		case <-time.After(waitTO):
			t.Error("fake board goroutine did not stop")
		}
	})
	// Consume up to the marker: the rest of the same write ("old login: ")
	// is now in the console's buffer, unmatched.
	_, err := con.Expect(ctxT(t, waitTO), regexp.MustCompile(`STALE`))
	require.NoError(t, err)

	err = boot.Boot(ctxT(t, shortTO), p, con, boot.DefaultPrompts())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "login prompt")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	select {
	case l := <-sent:
		t.Fatalf("Boot answered a stale login prompt with %q", l)
	default:
	}
}

// A real simulated board boots and logs in, and can be power-cycled and
// logged in again with output of the previous session still unread.
func TestBootSimBoard(t *testing.T) {
	b, err := sim.New(sim.Options{Name: "sim-boot", Dir: filepath.Join(t.TempDir(), "sim-boot")})
	require.NoError(t, err)
	con := console.New(b.Console(), console.Options{})
	t.Cleanup(func() {
		assert.NoError(t, b.Close())
		_ = con.Close()
	})

	require.NoError(t, boot.Boot(ctxT(t, waitTO), b, con, boot.DefaultPrompts()))
	on, err := b.State(ctxT(t, waitTO))
	require.NoError(t, err)
	assert.True(t, on)

	// The shell does not echo (sim consoles' shells come up with echo
	// off): its answer follows the prompt.
	require.NoError(t, con.Send("echo hello\n"))
	_, err = con.Expect(ctxT(t, waitTO), regexp.MustCompile(`(?:^|\s)hello\n`))
	require.NoError(t, err)
	// Leave a prompt and some output unread, then boot again.
	require.NoError(t, con.Send("echo 'stale login: '\n"))
	_, err = con.Expect(ctxT(t, waitTO), regexp.MustCompile(`stale login: \n`))
	require.NoError(t, err)

	require.NoError(t, boot.Boot(ctxT(t, waitTO), b, con, boot.DefaultPrompts()))
	require.NoError(t, con.Send("echo $((40+2))\n"))
	_, err = con.Expect(ctxT(t, waitTO), regexp.MustCompile(`(?:^|\s)42\n`))
	require.NoError(t, err)
}

func TestBootKernelPanic(t *testing.T) {
	p := newFakePower()
	con, b := newFakeLine(t, nil)
	play(t, p, b, func(b *fakeBoard) {
		if b.print("U-Boot\r\nStarting kernel ...\r\n[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n") != nil {
			return
		}
		b.drain()
	})
	err := boot.Boot(ctxT(t, waitTO), p, con, boot.DefaultPrompts())
	require.ErrorIs(t, err, boot.ErrKernelPanic)
	assert.Contains(t, err.Error(), "Unable to mount root fs")
}
