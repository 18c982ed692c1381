package testshell_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/boot"
	"github.com/troupe-lab/troupe/console"
	"github.com/troupe-lab/troupe/coordinator"
	"github.com/troupe-lab/troupe/sim"
	"github.com/troupe-lab/troupe/testshell"
)

// The tests of this file are not parallel: they run before the package's
// parallel tests, some of which have tight time budgets (TestRunContextEnds).

// fakeMN answers every call at once (a wait with one pair), unless hold is
// set: then a call waits until hold is closed or its run ends.
type fakeMN struct {
	mu    sync.Mutex
	calls []coordinator.Request
	times []time.Time
	hold  chan struct{}
	got   chan struct{} // a token per call received, if not nil
}

func (f *fakeMN) Call(ctx context.Context, r coordinator.Request) (coordinator.Reply, error) {
	f.mu.Lock()
	f.calls = append(f.calls, r)
	f.times = append(f.times, time.Now())
	f.mu.Unlock()
	if f.got != nil {
		f.got <- struct{}{}
	}
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-ctx.Done():
			return coordinator.Reply{}, ctx.Err()
		}
	}
	rep := coordinator.Reply{Kind: r.Kind, ID: r.ID, OK: true}
	if r.Kind == coordinator.Wait || r.Kind == coordinator.WaitAll {
		rep.Data = []coordinator.Message{{Sender: "peer-0", Key: "k", Value: r.ID}}
	}
	return rep, nil
}

func (f *fakeMN) requests() []coordinator.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]coordinator.Request(nil), f.calls...)
}

// mnRig is a booted sim board whose test shell has a MultiNode client and
// (serve) serves the board's side channel.
type mnRig struct {
	sh     *testshell.Shell
	mu     sync.Mutex
	lines  []string // console lines
	logged []string // lines Serve logged
}

func newMNRig(t *testing.T, mn testshell.MultiNode, serve bool) *mnRig {
	t.Helper()
	b, err := sim.New(sim.Options{Name: "sim-mn", Dir: t.TempDir()})
	require.NoError(t, err)
	return newMNRigOn(t, b, waitTO, mn, serve)
}

// rigBoard is what an mnRig needs of its board.
type rigBoard interface {
	boot.Power
	Console() io.ReadWriteCloser
	OpenMultiNodeChannel() (io.ReadWriteCloser, error)
	Close() error
}

// newMNRigOn makes an mnRig of b, booted within bootTO and its shell
// initialised with opts.
func newMNRigOn(t *testing.T, b rigBoard, bootTO time.Duration, mn testshell.MultiNode, serve bool, opts ...testshell.InitOption) *mnRig {
	t.Helper()
	r := &mnRig{}
	var sh *testshell.Shell
	con := console.New(b.Console(), console.Options{OnLine: func(l string) {
		r.mu.Lock()
		r.lines = append(r.lines, l)
		r.mu.Unlock()
		sh.Feed(l)
	}})
	sh = testshell.New(con, mn)
	r.sh = sh
	served := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		ctx, stop := context.WithTimeout(context.Background(), waitTO)
		defer stop()
		assert.NoError(t, b.Off(ctx)) // closes the channel: Serve returns
		<-served
		assert.NoError(t, con.Close())
		assert.NoError(t, b.Close())
	})
	if !serve {
		close(served)
	} else {
		// As the board actor does: the channel is asked for before the boot.
		ch, err := b.OpenMultiNodeChannel()
		require.NoError(t, err)
		go func() {
			defer close(served)
			assert.NoError(t, sh.Serve(ctx, ch, func(l string) {
				r.mu.Lock()
				r.logged = append(r.logged, l)
				r.mu.Unlock()
			}))
		}()
	}
	require.NoError(t, boot.Boot(ctxT(t, bootTO), b, con, boot.DefaultPrompts()))
	require.NoError(t, sh.Init(ctxT(t, waitTO), opts...))
	return r
}

func (r *mnRig) console() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

func (r *mnRig) log() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.logged...)
}

func (r *mnRig) run(t *testing.T, script string) testshell.Outcome {
	t.Helper()
	out, err := r.sh.Run(ctxT(t, waitTO), testshell.Test{Name: "mn", Script: script})
	require.NoError(t, err)
	return out
}

const mnScript = `troupe-send ready ip=10.0.0.1
lava-wait ready | sed 's/^/printed: /'
echo "wait-all=$(troupe-wait-all all role)"
lava-sync s1 && echo synced
# a helper run as a program (not through the aliases) takes the same path
sh -c 'troupe-sync s2' && echo "program synced"
`

// runMNScript runs mnScript on r and checks what every side-channel run
// shows: it passed, the helpers (aliases and programs) got their replies,
// and no request crossed the console, which it returns.
func runMNScript(t *testing.T, r *mnRig) string {
	t.Helper()
	out := r.run(t, mnScript)
	assert.Equal(t, 0, out.ExitCode)
	con := r.console()
	assert.Contains(t, con, "printed: k=ready")
	assert.Contains(t, con, "wait-all=k=all")
	assert.Contains(t, con, "synced")
	assert.Contains(t, con, "program synced")
	assert.NotContains(t, con, "<LAVA_MULTI_NODE>", "no request on the console")
	return con
}

// TestSideChannelMultiNode: on a sim board the MultiNode helpers (as the
// script's aliases and as programs) send their calls on the board's side
// channel and read the replies there: nothing crosses the console, the
// replies carry the pairs, and Serve logs each request.
func TestSideChannelMultiNode(t *testing.T) {
	mn := &fakeMN{}
	r := newMNRig(t, mn, true)
	con := runMNScript(t, r)
	assert.NotContains(t, con, "_COMPLETE", "no reply on the console")
	assert.Equal(t, []coordinator.Request{
		{Kind: coordinator.Send, ID: "ready", Data: []coordinator.KV{{Key: "ip", Value: "10.0.0.1"}}},
		{Kind: coordinator.Wait, ID: "ready"},
		{Kind: coordinator.WaitAll, ID: "all", Role: "role"},
		{Kind: coordinator.Sync, ID: "s1"},
		{Kind: coordinator.Sync, ID: "s2"},
	}, mn.requests(), "no node in a request: the channel is the node's")
	assert.Equal(t, mnLogged, r.log())
}

// mnLogged is what Serve logs of mnScript's calls.
var mnLogged = []string{
	"<LAVA_MULTI_NODE> <LAVA_SEND ready ip=10.0.0.1>", "<LAVA_MULTI_NODE> <LAVA_WAIT ready>",
	"<LAVA_MULTI_NODE> <LAVA_WAIT_ALL all role>", "<LAVA_MULTI_NODE> <LAVA_SYNC s1>", "<LAVA_MULTI_NODE> <LAVA_SYNC s2>",
}

// runConsoleMN runs prefix and mnScript on r and checks that the calls
// crossed the console and got their replies there.
func runConsoleMN(t *testing.T, r *mnRig, mn *fakeMN, prefix string) {
	t.Helper()
	out := r.run(t, prefix+mnScript)
	assert.Equal(t, 0, out.ExitCode)
	con := r.console()
	assert.Contains(t, con, "printed: k=ready")
	assert.Contains(t, con, "wait-all=k=all")
	assert.Contains(t, con, "program synced")
	assert.Contains(t, con, "<LAVA_MULTI_NODE> <LAVA_SYNC s1>", "the request crossed the console")
	assert.Len(t, mn.requests(), 5)
	assert.Empty(t, r.log(), "nothing on the side channel")
}

// TestConsoleMultiNodeFallback: a board without a side channel (a real
// board; here a sim board not asked for one) makes the same calls through
// the console markers and gets the same replies; so does a script that
// closed the channel's descriptor on a board that has one.
func TestConsoleMultiNodeFallback(t *testing.T) {
	for _, c := range []struct {
		name   string
		serve  bool
		prefix string
	}{{"no channel", false, ""}, {"descriptor closed", true, "exec 8>&-\n"}} {
		t.Run(c.name, func(t *testing.T) {
			mn := &fakeMN{}
			runConsoleMN(t, newMNRig(t, mn, c.serve), mn, c.prefix)
		})
	}
}

// TestMultiNodeCallsStartNoProcess: a MultiNode call or a test case
// result (--result) made by a test script (the helpers' aliases of the
// shell functions troupe_mn and troupe_test_case) starts no process on the
// board, on the side channel and on the console alike. A
// sandboxed sim board has a PID namespace of its own, which allocates PIDs
// in sequence: the PIDs of two background "true"s around the calls differ
// by one.
func TestMultiNodeCallsStartNoProcess(t *testing.T) {
	for _, serve := range []bool{true, false} {
		t.Run(fmt.Sprintf("side channel=%v", serve), func(t *testing.T) {
			mn := &fakeMN{}
			r := newMNRig(t, mn, serve)
			out := r.run(t, `true & before=$!; wait
troupe-sync s1 && lava-sync s2 && troupe-send m1 k=v && lava-send m2 &&
	troupe-wait m1 && lava-wait m2 && troupe-wait-all m3 && lava-wait-all m4 role &&
	troupe-test-case c1 --result pass && lava-test-case c2 --result fail --measurement 1.5 --units ms
true & after=$!; wait
echo "processes started: $((after - before - 1))"
# a sync removes the cache a wait left (LAVA's rm): that call starts one
lava-sync s3 && [ ! -e /tmp/lava_multi_node_cache.txt ] && echo "cache removed"
`)
			assert.Equal(t, 0, out.ExitCode)
			assert.Contains(t, r.console(), "processes started: 0")
			assert.Contains(t, r.console(), "cache removed")
			assert.Len(t, mn.requests(), 9)
			m := 1.5
			assert.Equal(t, []testshell.Case{{Name: "c1", Result: "pass"}, {Name: "c2", Result: "fail", Measurement: &m, Units: "ms"}}, out.Cases)
		})
	}
}

// TestSideChannelBounds: what a board's processes write on the channel
// is hostile. A line longer than MaxRequest is refused and skipped (the
// next request is served); a line that is no request and a request
// outside a run get a nack; nothing reaches the coordinator but requests.
func TestSideChannelBounds(t *testing.T) {
	mn := &fakeMN{}
	r := newMNRig(t, mn, true)
	out := r.run(t, `head -c 5000 /dev/zero | tr '\0' x >&8; echo >&8
read -r a <&8; echo "long: $a"
echo 'hello there' >&8; read -r b <&8; echo "garbage: $b"
troupe-sync after && echo "served after"
`)
	assert.Equal(t, 0, out.ExitCode)
	con := r.console()
	assert.Contains(t, con, "long: -request longer than 4096 bytes")
	assert.Contains(t, con, "garbage: -not a MultiNode request")
	assert.Contains(t, con, "served after")
	assert.Equal(t, []coordinator.Request{{Kind: coordinator.Sync, ID: "after"}}, mn.requests())

	// Outside a run: a helper left in the background gets a nack.
	code, err := r.sh.Exec(ctxT(t, waitTO), `out=$(PATH="$TROUPE_DIR/bin:$PATH" troupe-sync late 2>&1); echo "late: $out"`)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
	assert.Contains(t, r.console(), "late: troupe-sync late: no test is running")
	assert.Len(t, mn.requests(), 1)
}

// TestSideChannelInFlight: a board has at most MaxInFlight calls pending;
// the next request is not read until one of them ends.
func TestSideChannelInFlight(t *testing.T) {
	mn := &fakeMN{hold: make(chan struct{}), got: make(chan struct{}, 16)}
	r := newMNRig(t, mn, true)
	done := make(chan testshell.Outcome, 1)
	go func() {
		out, _ := r.sh.Run(ctxT(t, 2*waitTO), testshell.Test{Name: "mn", Script: `for i in 1 2 3 4 5 6; do troupe-wait w$i & done; wait`})
		done <- out
	}()
	for range testshell.MaxInFlight {
		select {
		case <-mn.got:
		case <-time.After(waitTO):
			t.Fatal("the first calls did not arrive")
		}
	}
	select {
	case <-mn.got:
		t.Fatalf("call %d arrived while %d were pending", testshell.MaxInFlight+1, testshell.MaxInFlight)
	case <-time.After(shortTO):
	}
	close(mn.hold)
	select {
	case out := <-done:
		assert.Equal(t, 0, out.ExitCode)
	case <-time.After(waitTO):
		t.Fatal("the run did not end")
	}
	assert.Len(t, mn.requests(), 6)
}

// TestSideChannelRate: a board's requests beyond a burst of RequestBurst
// pass at most one per RequestEvery.
func TestSideChannelRate(t *testing.T) {
	mn := &fakeMN{}
	r := newMNRig(t, mn, true)
	const n = testshell.RequestBurst + 100
	out := r.run(t, `i=0; while [ $i -lt `+strconv.Itoa(n)+` ]; do i=$((i+1)); printf '<LAVA_MULTI_NODE> <LAVA_SEND m%d>\n' $i >&8; read -r x <&8; done; echo sent $i`)
	assert.Equal(t, 0, out.ExitCode)
	calls := mn.requests()
	require.Len(t, calls, n)
	mn.mu.Lock()
	span := mn.times[n-1].Sub(mn.times[0])
	mn.mu.Unlock()
	assert.GreaterOrEqual(t, span, (n-testshell.RequestBurst-1)*testshell.RequestEvery, "the rate bound held the requests back")
}

// TestRunPutsFiles: a shell given a way to put files on its board
// delivers a test's script, environment and files with it, typing nothing
// through the console; a put that fails falls back to the console.
func TestRunPutsFiles(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("put fails=%v", fail), func(t *testing.T) {
			b, err := sim.New(sim.Options{Name: "sim-put", Dir: t.TempDir()})
			require.NoError(t, err)
			r := &mnRig{}
			var sh *testshell.Shell
			con := console.New(b.Console(), console.Options{OnLine: func(l string) {
				r.mu.Lock()
				r.lines = append(r.lines, l)
				r.mu.Unlock()
				sh.Feed(l)
			}})
			sent := &sendCounter{Console: con}
			sh = testshell.New(sent, nil)
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), waitTO)
				defer cancel()
				assert.NoError(t, b.Off(ctx))
				assert.NoError(t, con.Close())
				assert.NoError(t, b.Close())
			})
			require.NoError(t, boot.Boot(ctxT(t, waitTO), b, con, boot.DefaultPrompts()))
			require.NoError(t, sh.Init(ctxT(t, waitTO)))
			puts := 0
			sh.PutFilesWith(func(files map[string][]byte, mode fs.FileMode) error {
				puts++
				if fail {
					return errors.New("no room")
				}
				under := map[string][]byte{}
				for n, data := range files {
					under[path.Join(testshell.TmpSubdir, n)] = data
				}
				return b.PutFiles(under, mode)
			})
			r.mu.Lock()
			before := len(r.lines)
			r.mu.Unlock()
			sent.n.Store(0)
			out, err := sh.Run(ctxT(t, waitTO), testshell.Test{Name: "put", Script: `echo "v=$V $(cat "$TROUPE_DIR/extra")"`,
				Env: [][2]string{{"V", "x y"}}, Files: map[string][]byte{"extra": []byte("more")}})
			require.NoError(t, err)
			assert.Equal(t, 0, out.ExitCode)
			assert.Equal(t, 1, puts)
			r.mu.Lock()
			typed := strings.Join(r.lines[before:], "\n")
			r.mu.Unlock()
			assert.Contains(t, typed, "v=x y more")
			if fail {
				assert.Greater(t, sent.n.Load(), int64(600), "the files were typed")
			} else {
				assert.Less(t, sent.n.Load(), int64(300), "only the command line was typed")
			}
		})
	}
}

// sendCounter counts the bytes sent to a console.
type sendCounter struct {
	*console.Console
	n atomic.Int64
}

func (c *sendCounter) Send(s string) error {
	c.n.Add(int64(len(s)))
	return c.Console.Send(s)
}
