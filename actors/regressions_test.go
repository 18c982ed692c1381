package actors_test

// Regression tests: each once exposed a bug in the actor tree (lost node
// outcomes, wrong crash actions, hangs and races in board release).

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
)

// TestRegressionTerminatedOvertakesNodeDone: a node actor sends nodeDone (a user
// message) to the group and then stops; its Terminated reaches the group
// as a system message, which protoactor's mailbox processes before any
// queued user message. When the node's board is released quickly, the
// group sees Terminated first, records "node stopped unexpectedly during
// <action>" and drops the nodeDone that follows: the real error (and, for a
// complete node, its status and test cases) is lost.
func TestRegressionTerminatedOvertakesNodeDone(t *testing.T) {
	for range 5 {
		h := newHarness(t, "job.toml", fakeJob)
		h.syncRelease = false
		h.script("client-1", fakeConfig{onErr: errBoom})
		open := h.cfg.Open
		h.cfg.Open = func(node string, b lab.Board) (actors.Backend, error) {
			if h.nodeOf(b) == "client-0" {
				return nil, errBoom
			}
			return open(node, b)
		}
		h.start()
		r := h.wait(waitLimit)
		nodes := byNode(r)
		assert.Equal(t, "open board sim-0: boom", nodes["client-0"].Error)
		assert.Equal(t, "boot: board sim-1: power on: boom", nodes["client-1"].Error)
		assert.Equal(t, report.StatusComplete, nodes["server-0"].Status, nodes["server-0"].Error)
	}
}

// TestRegressionCrashReportsEarlierAction: same cause. A node reports its new
// action with nodePhase (user message) and then crashes; the crash reaches
// the group as a Failure (system message) first, so the error names the
// previous action.
func TestRegressionCrashReportsEarlierAction(t *testing.T) {
	for range 5 {
		h := newHarness(t, "job.toml", `
name = "one"
[roles.dut]
device_type = "fake"
[[action]]
type = "deploy"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "x"
timeout = "9s"
run = "true"
`)
		h.clock.onAfterFunc = func(d time.Duration) {
			if d == testTO {
				panic("clock on fire")
			}
		}
		h.start()
		r := h.wait(waitLimit)
		require.Len(t, r.Nodes, 1)
		assert.Equal(t, "node actor crashed during test 'x': clock on fire", r.Nodes[0].Error)
	}
}

// TestRegressionBackendPanicInReleaseHangsJob: a panic in Backend.Off (or Close)
// while releasing happens in the board actor's Stopping handler; protoactor
// escalates it instead of finishing the stop, so the board actor never
// terminates, nor its node, and the group never reports: the job never
// ends (runner.Run gives up after the job timeout plus a minute, without
// results). perform() recovers backend panics during actions; release()
// does not.
func TestRegressionBackendPanicInReleaseHangsJob(t *testing.T) {
	h := newHarness(t, "job.toml", fakeJob)
	h.script("client-0", fakeConfig{offPanic: true})
	h.start()
	r := h.wait(2 * time.Second)
	c0 := byNode(r)["client-0"]
	assert.Equal(t, report.StatusIncomplete, c0.Status)
	assert.Contains(t, c0.Error, "fake power switch exploded")
}

// TestRegressionConsoleLineBeforeShellRace: the board actor's console OnLine
// callback uses the variable sh, assigned only after console.New has
// started the reader goroutine. A line already waiting on the console
// (boot chatter of a board that was left on, a UART's stale buffer) is
// delivered before the assignment: a data race (reported by -race; this
// test only fails under -race), and a nil *Shell dereference if that line
// holds a <LAVA_SIGNAL_ marker, which kills the process.
func TestRegressionConsoleLineBeforeShellRace(t *testing.T) {
	h := newHarness(t, "job.toml", fakeJob)
	h.script("client-0", fakeConfig{stale: "stale output from before\r\n"})
	h.start()
	r := h.wait(waitLimit)
	assert.Equal(t, report.StatusComplete, r.Job.Status)
}

// TestRegressionBlockedConsoleWriteDelaysRelease: release waits for the action to
// stop before it closes the console, but an action blocked in
// Console.Send (a board that stopped reading its UART: full buffer, flow
// control) ignores its ctx, and only closing the console would unblock it.
// Cancel then takes releaseTimeout (10 s) per board instead of being quick,
// and logs "action did not stop in time".
func TestRegressionBlockedConsoleWriteDelaysRelease(t *testing.T) {
	h := newHarness(t, "job.toml", fakeJob)
	h.script("client-0", fakeConfig{mode: boardDeaf})
	h.start()
	f := h.fake("client-0")
	waitFor(t, h.sig, "boot to type the user name", func() bool { return f.count("console-write") > 0 })
	begin := time.Now()
	h.run.Cancel("stop")
	r := h.wait(15 * time.Second)
	assert.Less(t, time.Since(begin), 2*time.Second, "release of a deaf board")
	assert.Equal(t, report.StatusCanceled, r.Job.Status)
	checkReleased(t, f, 2)
}

// TestRegressionActionPowersBoardOnAfterRelease: release powers the board off
// before the canceled action has stopped. An action still running (here:
// boot, whose first power-off is slow) goes on to switch the board on
// again, and the board is closed (and left) powered on.
func TestRegressionActionPowersBoardOnAfterRelease(t *testing.T) {
	h := newHarness(t, "job.toml", fakeJob)
	h.script("client-0", fakeConfig{slowBootOff: true})
	h.start()
	f := h.fake("client-0")
	waitFor(t, h.sig, "boot's power-off", func() bool { return f.count("off") == 1 })
	h.run.Cancel("stop")
	r := h.wait(waitLimit)
	require.Equal(t, report.StatusCanceled, r.Job.Status)
	checkReleased(t, f, 2)
}

// TestRegressionCoordinatorCrashIsReported: a MultiNode coordinator that
// crashes ends the job at once, naming it, instead of leaving the nodes'
// calls to wait out their timeout + 5 s.
func TestRegressionCoordinatorCrashIsReported(t *testing.T) {
	h := newHarness(t, "job.toml", `
name = "mn"
timeout = "1m"
[multinode]
timeout = "17s"
[roles.a]
device_type = "sim"
[roles.b]
device_type = "sim"
[[action]]
type = "boot"
timeout = "30s"
[[action]]
type = "test"
name = "meet"
timeout = "40s"
run = "troupe-sync meet"
`)
	h.openSim()
	h.clock.onAfterFunc = func(d time.Duration) {
		if d == 17*time.Second { // the coordinator arms the deadline of the first call
			panic("coordinator on fire")
		}
	}
	h.start()
	r := h.wait(10 * time.Second)
	assert.Equal(t, report.StatusIncomplete, r.Job.Status)
	assert.Contains(t, r.Job.Error, "MultiNode coordinator crashed: coordinator on fire")
	for _, n := range r.Nodes {
		assert.Equal(t, report.StatusIncomplete, n.Status, n.Name)
		assert.NotEqual(t, report.Infrastructure, n.Class, "%s: its board is not to blame", n.Name)
	}
}

// TestDeathReachesPeersBeforeRelease: a node whose shell dies mid-barrier
// tells the coordinator before its board is powered off and released
// (slow for a sandboxed sim board): its peer's sync fails while the dead
// node's power-off is still held back here until that peer has finished.
func TestDeathReachesPeersBeforeRelease(t *testing.T) {
	h := newHarness(t, "job.toml", `
name = "death"
timeout = "1m"
[multinode]
timeout = "50s"
[roles.a]
device_type = "sim"
[roles.b]
device_type = "sim"
[[action]]
type = "boot"
timeout = "30s"
[[action]]
type = "test"
name = "meet"
timeout = "40s"
run = '''
troupe-sync started
if [ "$TROUPE_NODE" = a-0 ]; then kill -KILL $PPID; sleep 100; fi
troupe-sync ready || echo "ready failed"
'''
`)
	h.syncRelease = false
	h.openSim()
	open := h.cfg.Open
	var peerFirst atomic.Bool
	h.cfg.Open = func(node string, b lab.Board) (actors.Backend, error) {
		be, err := open(node, b)
		if cb, ok := be.(*countingBackend); ok && node == "a-0" {
			cb.beforeOff = func() {
				if !h.events.has("a-0", "test 'meet'") {
					return // a power cycle of the boot
				}
				h.waitFinal("b-0")
				peerFirst.Store(slices.ContainsFunc(h.events.phases("b-0"), isFinal))
			}
		}
		return be, err
	}
	h.start()
	r := h.wait(2 * waitLimit)
	nodes := byNode(r)
	assert.Equal(t, report.StatusIncomplete, nodes["a-0"].Status)
	assert.Contains(t, nodes["a-0"].Error, "shell died")
	assert.Equal(t, report.StatusComplete, nodes["b-0"].Status)
	assert.True(t, peerFirst.Load(), "the peer was released only after the dead node's power-off")
	entries, _, cancel := h.book.Subscribe(0, 1)
	cancel()
	assert.True(t, slices.ContainsFunc(entries, func(e logbook.Entry) bool { return e.Node == "b-0" && e.Text == "ready failed" }),
		"b's sync failed")
}
