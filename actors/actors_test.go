package actors_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/report"
)

// fakeJob has three nodes: client-0 (board sim-0), client-1 (sim-1) and the
// essential server-0 (sim-2). Every action has a timeout of its own, so the
// tests can tell the timers apart by duration.
const fakeJob = `
name = "fake"
timeout = "1m"

[roles.client]
device_type = "fake"
count = 2

[roles.server]
device_type = "fake"
essential = true

[[action]]
type = "deploy"
image = "rootfs.tar"
timeout = "7s"

[[action]]
type = "boot"
timeout = "8s"

[[action]]
type = "test"
name = "x"
timeout = "9s"
run = "echo hi"
`

const (
	deployTO = 7 * time.Second
	bootTO   = 8 * time.Second
	testTO   = 9 * time.Second
	jobTO    = time.Minute
)

var fakeNodes = []string{"client-0", "client-1", "server-0"}

// ------------------------------------------------------------ success

// TestSimBoardsComplete runs a job on real simulated boards and checks the
// whole results: nodes, boards, roles, test cases, events, timers, release.
func TestSimBoardsComplete(t *testing.T) {
	h := newHarness(t, "../examples/sim-job.toml", `
name = "simjob"
timeout = "1m"

[roles.server]
device_type = "sim"
essential = true

[roles.client]
device_type = "sim"

[[action]]
type = "deploy"
image = "hello-rootfs"

[[action]]
type = "boot"
timeout = "30s"

[[action]]
type = "test"
roles = ["server"]
name = "serve"
timeout = "30s"
run = '''
troupe-test-case motd --shell test -f etc/motd
troupe-test-case speed --result pass --measurement 3.5 --units MB/s
troupe-test-case env --shell test "$TROUPE_NODE/$TROUPE_ROLE/$TROUPE_JOB" = server-0/server/simjob
troupe-test-case lava-env --shell test "$LAVA_DEVICE_HOSTNAME/$LAVA_DEVICE_TYPE/$LAVA_JOB_ID" = sim-1/sim/simjob
'''

[[action]]
type = "test"
roles = ["client"]
name = "probe"
timeout = "30s"
run = '''
troupe-test-case nofile --shell test -f no/such/file
exit 3
'''
`)
	backend := h.openSim()
	h.start()
	r := h.wait(waitLimit)

	assert.Equal(t, report.Job{Name: "simjob", Status: report.StatusComplete, DurationS: 0}, r.Job,
		"the fake clock never moved")
	assert.Equal(t, []report.Node{
		{Name: "client-0", Role: "client", Board: "sim-0", Status: report.StatusComplete},
		{Name: "server-0", Role: "server", Board: "sim-1", Status: report.StatusComplete},
	}, r.Nodes)
	speed := 3.5
	assert.Equal(t, []report.Test{
		{Node: "client-0", Role: "client", Suite: "probe", Name: "nofile", Result: report.Fail},
		{Node: "client-0", Role: "client", Suite: "troupe", Name: "probe", Result: report.Fail},
		{Node: "server-0", Role: "server", Suite: "serve", Name: "motd", Result: report.Pass},
		{Node: "server-0", Role: "server", Suite: "serve", Name: "speed", Result: report.Pass, Measurement: &speed, Units: "MB/s"},
		{Node: "server-0", Role: "server", Suite: "serve", Name: "env", Result: report.Pass},
		{Node: "server-0", Role: "server", Suite: "serve", Name: "lava-env", Result: report.Pass},
		{Node: "server-0", Role: "server", Suite: "troupe", Name: "serve", Result: report.Pass},
	}, r.Tests)

	assert.Equal(t, []string{"deploy", "boot", "test 'probe'", "complete"}, h.events.phases("client-0"))
	assert.Equal(t, []string{"deploy", "boot", "test 'serve'", "complete"}, h.events.phases("server-0"))
	for _, e := range h.events.all() {
		assert.Equal(t, h.boards[e.Node].Name, e.Board, "event %+v", e)
		assert.Empty(t, e.Detail, "event %+v", e)
		assert.False(t, e.Time.IsZero(), "event %+v", e)
	}

	// Every timer was stopped: none is left to fire into a finished job.
	timers := h.clock.all()
	require.NotEmpty(t, timers)
	for _, tm := range timers {
		assert.True(t, tm.stopped, "timer of %s was not stopped", tm.d)
	}
	assert.Len(t, timers, 1+2*3, "the job timer and one per action and node (deploy has the default timeout)")

	for _, node := range []string{"client-0", "server-0"} {
		ops, onAtClose := backend(node).snapshot()
		// boot power-cycles (off), release powers off and closes, once.
		assert.Equal(t, []string{"off", "off", "close"}, ops, node)
		assert.Equal(t, []bool{false}, onAtClose, "%s: powered off before it is closed", node)

		// A sim board's shell has echo off from the login on: the login
		// name is echoed, nothing the harness types after it is (Init's
		// line included, which has no stty to turn echo off).
		raw, err := os.ReadFile(filepath.Join(h.logs, "logs", node+".log"))
		require.NoError(t, err, node)
		assert.True(t, strings.Contains(string(raw), "login: root"), "%s: the login name not echoed", node)
		assert.False(t, strings.Contains(string(raw), "PS1=''"), "%s: Init's line echoed", node)
		assert.False(t, strings.Contains(string(raw), "printf '<TROUPE_%s"), "%s: a command line echoed", node)
	}
}

// TestInitStty: the test shell's Init types "stty -echo" into the shell
// of a board whose backend does not say its terminal has echo off (a real
// board's, QEMU's), and no stty into one that does (actors.EchoOffShell:
// sim boards).
func TestInitStty(t *testing.T) {
	for _, echoOff := range []bool{false, true} {
		t.Run(fmt.Sprintf("echo off %v", echoOff), func(t *testing.T) {
			h := newHarness(t, "job.toml", `
name = "one"
timeout = "1m"
[roles.dut]
device_type = "fake"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "x"
run = "echo hi"
`)
			if echoOff {
				open := h.cfg.Open
				h.cfg.Open = func(node string, b lab.Board) (actors.Backend, error) {
					be, err := open(node, b)
					return echoOffBackend{be}, err
				}
			}
			h.start()
			r := h.wait(waitLimit)
			require.Len(t, r.Nodes, 1)
			assert.Equal(t, report.StatusComplete, r.Nodes[0].Status, r.Nodes[0].Error)

			f := h.fake("dut-0")
			f.mu.Lock()
			cmds := slices.Clone(f.cmds)
			f.mu.Unlock()
			require.NotEmpty(t, cmds)
			assert.Contains(t, cmds[0], "PS1=''", "the first command is Init's")
			assert.Equal(t, !echoOff, strings.Contains(cmds[0], "stty -echo"), "Init's command: %q", cmds[0])
			for _, c := range cmds[1:] {
				assert.NotContains(t, c, "stty", "only Init turns echo off")
			}
		})
	}
}

// echoOffBackend is a backend that says its shell's terminal has echo off.
type echoOffBackend struct{ actors.Backend }

func (echoOffBackend) EchoOff() bool { return true }

// TestFakeBoardTestResults checks how a test action's outcome becomes
// result cases and the node status, one scripted test run per case.
func TestFakeBoardTestResults(t *testing.T) {
	m := 12.5
	cases := []struct {
		name       string
		run        fakeTest
		wantTests  []report.Test
		wantStatus string
		wantErr    string
	}{
		{
			name: "exit 0 with cases",
			run: fakeTest{output: []string{
				"hello",
				"<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass>",
				"<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=b RESULT=fail MEASUREMENT=12.5 UNITS=ms>",
				"<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=c RESULT=skip>",
			}},
			wantTests: []report.Test{
				{Suite: "x", Name: "a", Result: report.Pass},
				{Suite: "x", Name: "b", Result: report.Fail, Measurement: &m, Units: "ms"},
				{Suite: "x", Name: "c", Result: report.Skip},
				{Suite: "troupe", Name: "x", Result: report.Pass},
			},
			wantStatus: report.StatusComplete,
		},
		{
			name:       "exit 0 without cases",
			run:        fakeTest{},
			wantTests:  []report.Test{{Suite: "troupe", Name: "x", Result: report.Pass}},
			wantStatus: report.StatusComplete,
		},
		{
			name: "non-zero exit fails the troupe case but the node completes",
			run: fakeTest{exit: 2, output: []string{
				"<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass>",
			}},
			wantTests: []report.Test{
				{Suite: "x", Name: "a", Result: report.Pass},
				{Suite: "troupe", Name: "x", Result: report.Fail},
			},
			wantStatus: report.StatusComplete,
		},
		{
			name: "malformed markers are not results",
			run: fakeTest{output: []string{
				"<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=maybe>",
			}},
			wantTests:  []report.Test{{Suite: "troupe", Name: "x", Result: report.Pass}},
			wantStatus: report.StatusComplete,
		},
		{
			name: "sets, references and attachments",
			run: fakeTest{output: []string{
				"<LAVA_SIGNAL_TESTSET START net>",
				"<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass>",
				"<LAVA_SIGNAL_TESTREFERENCE r fail https://ci.example.org/1>",
				"<LAVA_SIGNAL_TESTSET STOP>",
				"<LAVA_SIGNAL_TESTATTACH a log.txt 2 - text/plain>",
				"aGk=",
				"<LAVA_SIGNAL_TESTATTACH_END>",
				"<LAVA_SIGNAL_TESTATTACH nocase orphan.bin 1 ->",
				"eA==",
				"<LAVA_SIGNAL_TESTATTACH_END>",
			}},
			wantTests: []report.Test{
				{Suite: "x", Name: "a", Result: report.Pass, Set: "net", Attachments: []report.Attachment{
					report.NewAttachment("dut-0", "x", "a", "log.txt", "text/plain", []byte("hi"))}},
				{Suite: "x", Name: "r", Result: report.Fail, Set: "net", Reference: "https://ci.example.org/1"},
				{Suite: "troupe", Name: "x", Result: report.Pass, Attachments: []report.Attachment{
					report.NewAttachment("dut-0", "troupe", "x", "orphan.bin", "", []byte("x"))}},
			},
			wantStatus: report.StatusComplete,
		},
		{
			name: "raise makes the node incomplete",
			run: fakeTest{exit: 1, output: []string{
				"<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass>",
				"<LAVA_SIGNAL_TESTRAISE network is down>",
			}},
			wantTests: []report.Test{
				{Suite: "x", Name: "a", Result: report.Pass},
				{Suite: "troupe", Name: "x", Result: report.Fail},
			},
			wantStatus: report.StatusIncomplete,
			wantErr:    "test 'x' raised: network is down",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "job.toml", `
name = "one"
timeout = "1m"
[roles.dut]
device_type = "fake"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "x"
run = "echo hi"
[[action]]
type = "test"
name = "after"
run = "true"
`)
			h.script("dut-0", fakeConfig{tests: map[string]fakeTest{"x": tc.run}})
			h.start()
			r := h.wait(waitLimit)

			want := []report.Test{}
			for _, w := range tc.wantTests {
				w.Node, w.Role = "dut-0", "dut"
				want = append(want, w)
			}
			if tc.wantStatus == report.StatusComplete {
				want = append(want, report.Test{Node: "dut-0", Role: "dut", Suite: "troupe", Name: "after", Result: report.Pass})
			}
			assert.Equal(t, want, r.Tests)
			require.Len(t, r.Nodes, 1)
			assert.Equal(t, tc.wantStatus, r.Nodes[0].Status)
			assert.Equal(t, tc.wantStatus, r.Job.Status)
			if tc.wantErr == "" {
				assert.Empty(t, r.Nodes[0].Error)
			} else {
				assert.Contains(t, r.Nodes[0].Error, tc.wantErr)
				assert.Contains(t, r.Job.Error, "dut-0: "+tc.wantErr)
			}

			f := h.fake("dut-0")
			checkReleased(t, f, 2)
			f.mu.Lock()
			logins, runs := f.logins, slices.Clone(f.runs)
			var written []string
			for _, content := range f.files {
				written = append(written, content)
			}
			f.mu.Unlock()
			assert.Equal(t, []string{"root"}, logins)
			require.NotEmpty(t, runs)
			// The node's environment travels in the run command or in a
			// file written before it, depending on the test shell version.
			seen := strings.Join(append(runs, written...), "\n")
			assert.Contains(t, seen, "echo hi", "the test script was delivered")
			for _, kv := range []string{"TROUPE_JOB='one'", "TROUPE_NODE='dut-0'", "TROUPE_ROLE='dut'"} {
				assert.Contains(t, seen, kv, "the test runs with the node's environment")
			}
		})
	}
}

// ------------------------------------------------------------ release

type nodeWant struct {
	status string
	err    string // substring of the node's error; "" means none
}

// TestReleaseOnEveryPath runs the three-node fake job down each way a job
// can end and checks the statuses, the errors and that every board that
// was opened was powered off and closed exactly once, last.
func TestReleaseOnEveryPath(t *testing.T) {
	complete := nodeWant{status: report.StatusComplete}
	cases := []struct {
		name    string
		scripts map[string]fakeConfig
		// act drives the job once it started (fire timers, cancel...).
		act       func(t *testing.T, h *harness)
		wantJob   string
		wantError []string // substrings of the job error
		want      map[string]nodeWant
		wantOff   map[string]int // Off calls; default 2 (boot, release)
	}{
		{
			name:    "success",
			wantJob: report.StatusComplete,
			want:    map[string]nodeWant{"client-0": complete, "client-1": complete, "server-0": complete},
		},
		{
			name:      "deploy error",
			scripts:   map[string]fakeConfig{"client-1": {deployErr: errBoom}},
			wantJob:   report.StatusIncomplete,
			wantError: []string{"client-1: deploy: board sim-1: boom"},
			wantOff:   map[string]int{"client-1": 1},
			want: map[string]nodeWant{
				"client-0": complete,
				"client-1": {report.StatusIncomplete, "deploy: board sim-1: boom"},
				"server-0": complete,
			},
		},
		{
			name:      "power on error",
			scripts:   map[string]fakeConfig{"client-0": {onErr: errBoom}},
			wantJob:   report.StatusIncomplete,
			wantError: []string{"client-0: boot: board sim-0: power on: boom"},
			want: map[string]nodeWant{
				"client-0": {report.StatusIncomplete, "boot: board sim-0: power on: boom"},
				"client-1": complete,
				"server-0": complete,
			},
		},
		{
			name: "essential node fails",
			scripts: map[string]fakeConfig{
				"client-0": {deployHang: true},
				"client-1": {deployHang: true},
				"server-0": {deployErr: errBoom},
			},
			wantJob:   report.StatusIncomplete,
			wantError: []string{"essential node server-0 failed: deploy: board sim-2: boom", "client-0 in ", "client-1 in "},
			wantOff:   map[string]int{"client-0": 1, "client-1": 1, "server-0": 1},
			want: map[string]nodeWant{
				"client-0": {report.StatusIncomplete, "essential node server-0 failed"},
				"client-1": {report.StatusIncomplete, "essential node server-0 failed"},
				"server-0": {report.StatusIncomplete, "deploy: board sim-2: boom"},
			},
		},
		{
			name:    "boot timeout",
			scripts: map[string]fakeConfig{"client-0": {mode: boardSilent}},
			act: func(t *testing.T, h *harness) {
				h.waitEvent("client-0", "boot")
				h.waitEvent("client-1", report.StatusComplete)
				h.waitEvent("server-0", report.StatusComplete)
				h.clock.fire(h.pending(bootTO))
			},
			wantJob:   report.StatusIncomplete,
			wantError: []string{"client-0: boot timed out after 8s"},
			want: map[string]nodeWant{
				"client-0": {report.StatusIncomplete, "boot timed out after 8s"},
				"client-1": complete,
				"server-0": complete,
			},
		},
		{
			name:    "test timeout",
			scripts: map[string]fakeConfig{"client-1": {tests: map[string]fakeTest{"x": {hang: true}}}},
			act: func(t *testing.T, h *harness) {
				f := h.fake("client-1")
				waitFor(t, h.sig, "client-1 to hang in its test", func() bool { return f.count("test-hang x") == 1 })
				h.waitEvent("client-0", report.StatusComplete)
				h.waitEvent("server-0", report.StatusComplete)
				h.clock.fire(h.pending(testTO))
			},
			wantJob:   report.StatusIncomplete,
			wantError: []string{"client-1: test 'x' timed out after 9s"},
			want: map[string]nodeWant{
				"client-0": complete,
				"client-1": {report.StatusIncomplete, "test 'x' timed out after 9s"},
				"server-0": complete,
			},
		},
		{
			name: "job timeout",
			scripts: map[string]fakeConfig{
				"client-0": {mode: boardSilent},
				"client-1": {mode: boardSilent},
				"server-0": {mode: boardSilent},
			},
			act: func(t *testing.T, h *harness) {
				for _, n := range fakeNodes {
					h.waitEvent(n, "boot")
					h.waitOp(n, "on") // the boot's power cycle is done: 2 offs
				}
				h.clock.fire(h.pending(jobTO))
			},
			wantJob:   report.StatusIncomplete,
			wantError: []string{"job timed out after 1m0s: client-0 in boot, client-1 in boot, server-0 in boot"},
			want: map[string]nodeWant{
				"client-0": {report.StatusIncomplete, "job timed out after 1m0s (during boot)"},
				"client-1": {report.StatusIncomplete, "job timed out after 1m0s (during boot)"},
				"server-0": {report.StatusIncomplete, "job timed out after 1m0s (during boot)"},
			},
		},
		{
			name: "cancel during deploy",
			scripts: map[string]fakeConfig{
				"client-0": {deployHang: true},
				"client-1": {deployHang: true},
				"server-0": {deployHang: true},
			},
			act: func(t *testing.T, h *harness) {
				for _, n := range fakeNodes {
					h.waitEvent(n, "deploy")
				}
				h.run.Cancel("operator said stop")
			},
			wantJob:   report.StatusCanceled,
			wantError: []string{"operator said stop: client-0 in deploy, client-1 in deploy, server-0 in deploy"},
			wantOff:   map[string]int{"client-0": 1, "client-1": 1, "server-0": 1},
			want: map[string]nodeWant{
				"client-0": {report.StatusCanceled, "operator said stop (during deploy)"},
				"client-1": {report.StatusCanceled, "operator said stop (during deploy)"},
				"server-0": {report.StatusCanceled, "operator said stop (during deploy)"},
			},
		},
		{
			// The boards never print a login prompt: boot waits forever.
			name: "cancel while boot hangs",
			scripts: map[string]fakeConfig{
				"client-0": {mode: boardSilent},
				"client-1": {mode: boardSilent},
				"server-0": {mode: boardSilent},
			},
			act: func(t *testing.T, h *harness) {
				for _, n := range fakeNodes {
					h.waitEvent(n, "boot")
					f := h.fake(n)
					waitFor(t, h.sig, n+" powered on", func() bool { return f.count("on") == 1 })
				}
				h.run.Cancel("stop")
			},
			wantJob: report.StatusCanceled,
			want: map[string]nodeWant{
				"client-0": {report.StatusCanceled, "stop (during boot)"},
				"client-1": {report.StatusCanceled, "stop (during boot)"},
				"server-0": {report.StatusCanceled, "stop (during boot)"},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "job.toml", fakeJob)
			for n, c := range tc.scripts {
				h.script(n, c)
			}
			h.start()
			if tc.act != nil {
				tc.act(t, h)
			}
			r := h.wait(waitLimit)

			assert.Equal(t, tc.wantJob, r.Job.Status, "job error: %s", r.Job.Error)
			for _, s := range tc.wantError {
				assert.Contains(t, r.Job.Error, s)
			}
			if len(tc.wantError) == 0 && tc.wantJob == report.StatusComplete {
				assert.Empty(t, r.Job.Error)
			}
			nodes := byNode(r)
			require.Len(t, nodes, len(tc.want))
			for name, w := range tc.want {
				got := nodes[name]
				assert.Equal(t, w.status, got.Status, "%s: %s", name, got.Error)
				if w.err == "" {
					assert.Empty(t, got.Error, name)
				} else {
					assert.Contains(t, got.Error, w.err, name)
				}
				// The node's final phase was emitted last, with its error.
				var evs []actors.Event
				for _, e := range h.events.all() {
					if e.Node == name {
						evs = append(evs, e)
					}
				}
				require.NotEmpty(t, evs, name)
				last := evs[len(evs)-1]
				assert.Equal(t, w.status, last.Phase, name)
				assert.Equal(t, got.Error, last.Detail, name)
				assert.Equal(t, h.boards[name].Name, last.Board, name)
				wantOff, ok := tc.wantOff[name]
				if !ok {
					wantOff = 2 // boot's power cycle, release
				}
				checkReleased(t, h.fake(name), wantOff)
			}
			for _, tm := range h.clock.all() {
				assert.True(t, tm.stopped || tm.fired, "timer of %s left running", tm.d)
			}
		})
	}
}

// TestCancelSimBoardsWhileTestRuns cancels a job whose test sleeps on real
// simulated boards: the job ends quickly as canceled, boards off and closed.
func TestCancelSimBoardsWhileTestRuns(t *testing.T) {
	h := newHarness(t, "job.toml", `
name = "sleepy"
timeout = "1h"
[roles.dut]
device_type = "sim"
count = 2
[[action]]
type = "boot"
[[action]]
type = "test"
name = "sleep"
run = "sleep 600"
`)
	h.cfg.Clock = nil // the wall clock: nothing may fire within the test
	backend := h.openSim()
	h.start()
	h.waitEvent("dut-0", "test 'sleep'")
	h.waitEvent("dut-1", "test 'sleep'")
	begin := time.Now()
	h.run.Cancel("interrupted")
	r := h.wait(waitLimit)
	assert.Less(t, time.Since(begin), 2*time.Second, "releasing the boards took too long")

	assert.Equal(t, report.StatusCanceled, r.Job.Status)
	assert.Equal(t, "interrupted: dut-0 in test 'sleep', dut-1 in test 'sleep'", r.Job.Error)
	for _, n := range r.Nodes {
		assert.Equal(t, report.StatusCanceled, n.Status, n.Name)
		assert.Equal(t, "interrupted (during test 'sleep')", n.Error, n.Name)
		ops, onAtClose := backend(n.Name).snapshot()
		assert.Equal(t, []string{"off", "off", "close"}, ops, n.Name)
		assert.Equal(t, []bool{false}, onAtClose, n.Name)
	}
	assert.Empty(t, r.Tests, "a canceled test records no case")
}

// ------------------------------------------------------------ timers

// TestStaleTimersHaveNoEffect fires timers that were already stopped (as a
// real timer may when it expires concurrently with Stop): they must not
// end anything, and every timer is stopped once it is not needed.
func TestStaleTimersHaveNoEffect(t *testing.T) {
	h := newHarness(t, "job.toml", fakeJob)
	h.script("client-0", fakeConfig{mode: boardSilent})
	h.start()
	h.waitEvent("client-0", "boot")

	// client-0's deploy is over: its deploy timer was stopped. Fire every
	// stopped deploy timer (client-0's among them): stale, no effect.
	var stale []*fakeTimer
	h.clock.mu.Lock()
	for _, tm := range h.clock.timers {
		if tm.d == deployTO && tm.stopped {
			stale = append(stale, tm)
		}
	}
	h.clock.mu.Unlock()
	require.NotEmpty(t, stale, "a finished deploy stops its timer")
	for _, tm := range stale {
		h.clock.fire(tm)
	}

	// The other nodes finish; the stale fire did not end client-0.
	h.waitEvent("client-1", report.StatusComplete)
	h.waitEvent("server-0", report.StatusComplete)
	assert.Equal(t, []string{"deploy", "boot"}, h.events.phases("client-0"),
		"a stale deploy timeout must not end the node during boot")

	h.clock.fire(h.pending(bootTO))
	r := h.wait(waitLimit)
	c0 := byNode(r)["client-0"]
	assert.Equal(t, report.StatusIncomplete, c0.Status)
	assert.True(t, strings.HasPrefix(c0.Error, "boot timed out after 8s: "), "and not the stale deploy timeout: %s", c0.Error)
	assert.Contains(t, c0.Error, "wait for login prompt", "the timeout says what boot was waiting for")

	// The job timer was stopped when the job ended; firing it is harmless
	// and produces no second result.
	// (Found by its duration: the nodes may arm theirs before it.)
	var jobTimer *fakeTimer
	h.clock.mu.Lock()
	for _, tm := range h.clock.timers {
		if tm.d == jobTO {
			jobTimer = tm
			break
		}
	}
	stopped := jobTimer != nil && jobTimer.stopped
	h.clock.mu.Unlock()
	require.NotNil(t, jobTimer, "the job armed its timer")
	assert.True(t, stopped)
	h.clock.fire(jobTimer)
	select {
	case r2 := <-h.run.Done():
		t.Fatalf("second result after a stale job timeout: %+v", r2)
	default:
	}
	for _, n := range fakeNodes {
		checkReleased(t, h.fake(n), 2)
	}
}

// TestJobDuration uses the fake clock for the job's duration.
func TestJobDuration(t *testing.T) {
	h := newHarness(t, "job.toml", fakeJob)
	h.script("server-0", fakeConfig{deployHang: true})
	h.start()
	h.waitEvent("server-0", "deploy")
	h.clock.advance(90 * time.Second)
	h.run.Cancel("enough")
	r := h.wait(waitLimit)
	assert.Equal(t, 90.0, r.Job.DurationS)
	assert.Equal(t, report.StatusCanceled, r.Job.Status)
}

// ------------------------------------------------------------ supervision

func TestOpenPanics(t *testing.T) {
	cases := []struct {
		name    string
		panicOn string // node whose Open panics
		hang    bool   // the other nodes hang in deploy
		wantOff int    // Off calls of each other node
		wantJob []string
		want    map[string]nodeWant
	}{
		{
			name:    "non-essential node",
			panicOn: "client-1",
			wantOff: 2,
			wantJob: []string{"client-1: node actor crashed during start: board on fire"},
			want: map[string]nodeWant{
				"client-0": {status: report.StatusComplete},
				"client-1": {report.StatusIncomplete, "node actor crashed during start: board on fire"},
				"server-0": {status: report.StatusComplete},
			},
		},
		{
			name:    "essential node",
			panicOn: "server-0",
			hang:    true,
			wantOff: 1,
			wantJob: []string{"essential node server-0 failed: node actor crashed", "client-0 in ", "client-1 in "},
			want: map[string]nodeWant{
				"client-0": {report.StatusIncomplete, "essential node server-0 failed: node actor crashed"},
				"client-1": {report.StatusIncomplete, "essential node server-0 failed: node actor crashed"},
				"server-0": {report.StatusIncomplete, "node actor crashed during start: board on fire"},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "job.toml", fakeJob)
			open := h.cfg.Open
			h.cfg.Open = func(node string, b lab.Board) (actors.Backend, error) {
				if h.nodeOf(b) == tc.panicOn {
					panic("board on fire")
				}
				return open(node, b)
			}
			for _, n := range fakeNodes {
				h.script(n, fakeConfig{deployHang: tc.hang})
			}
			h.start()
			r := h.wait(waitLimit)

			assert.Equal(t, report.StatusIncomplete, r.Job.Status)
			for _, s := range tc.wantJob {
				assert.Contains(t, r.Job.Error, s)
			}
			nodes := byNode(r)
			for name, w := range tc.want {
				assert.Equal(t, w.status, nodes[name].Status, "%s: %s", name, nodes[name].Error)
				if w.err != "" {
					assert.Contains(t, nodes[name].Error, w.err, name)
				}
				if name != tc.panicOn {
					checkReleased(t, h.fake(name), tc.wantOff)
				}
			}
			phases := h.events.phases(tc.panicOn)
			require.NotEmpty(t, phases)
			assert.Equal(t, report.StatusIncomplete, phases[len(phases)-1])
		})
	}
}

// TestNodeActorCrashReleasesBoard crashes a node actor after its board actor
// started (the node's clock panics when it arms a timer): the board is still
// powered off and closed, and an essential crash ends the group.
func TestNodeActorCrashReleasesBoard(t *testing.T) {
	const job = `
name = "crash"
timeout = "1m"
[roles.a]
device_type = "fake"
essential = %v
[roles.b]
device_type = "fake"
[[action]]
type = "deploy"
timeout = "7s"
[[action]]
type = "boot"
roles = ["a"]
[[action]]
type = "test"
roles = ["a"]
name = "crashy"
timeout = "13s"
run = "true"
`
	for _, essential := range []bool{false, true} {
		t.Run(map[bool]string{false: "non-essential", true: "essential"}[essential], func(t *testing.T) {
			h := newHarness(t, "job.toml", strings.Replace(job, "%v", map[bool]string{false: "false", true: "true"}[essential], 1))
			h.clock.onAfterFunc = func(d time.Duration) {
				if d == 13*time.Second {
					// Let the group see b-0 deploying first, so the job
					// error can name b-0's action.
					h.waitPhase("b-0", func(p string) bool { return p == "deploy" })
					panic("clock on fire")
				}
			}
			h.script("b-0", fakeConfig{deployHang: essential})
			h.start()
			r := h.wait(waitLimit)

			nodes := byNode(r)
			assert.Equal(t, report.StatusIncomplete, nodes["a-0"].Status)
			assert.Contains(t, nodes["a-0"].Error, "node actor crashed")
			assert.Contains(t, nodes["a-0"].Error, "clock on fire")
			assert.Equal(t, report.StatusIncomplete, r.Job.Status)
			if essential {
				assert.Equal(t, report.StatusIncomplete, nodes["b-0"].Status)
				assert.Contains(t, nodes["b-0"].Error, "essential node a-0 failed")
				assert.Contains(t, r.Job.Error, "essential node a-0 failed")
				assert.Contains(t, r.Job.Error, "b-0 in deploy")
			} else {
				assert.Equal(t, report.StatusComplete, nodes["b-0"].Status, nodes["b-0"].Error)
				assert.Contains(t, r.Job.Error, "a-0: node actor crashed")
			}
			checkReleased(t, h.fake("a-0"), 2) // its boot's power cycle, then the release
			checkReleased(t, h.fake("b-0"), 1)
		})
	}
}

// TestBoardActorCrash makes the board actor panic as it starts (its
// backend's Console panics): the node ends incomplete and the board is
// still powered off and closed.
func TestBoardActorCrash(t *testing.T) {
	h := newHarness(t, "job.toml", fakeJob)
	h.script("client-0", fakeConfig{consolePanic: true})
	h.start()
	r := h.wait(waitLimit)

	nodes := byNode(r)
	assert.Equal(t, report.StatusIncomplete, nodes["client-0"].Status)
	assert.Contains(t, nodes["client-0"].Error, "board actor crashed during deploy: fake console exploded")
	assert.Equal(t, report.StatusComplete, nodes["client-1"].Status)
	assert.Equal(t, report.StatusComplete, nodes["server-0"].Status)
	f := h.fake("client-0")
	assert.Equal(t, []string{"console", "off", "close"}, f.opsSnapshot())
}

// TestOpenError: a backend that cannot be opened ends its node only. (Its
// error text is checked by TestBugTerminatedOvertakesNodeDone.)
func TestOpenError(t *testing.T) {
	h := newHarness(t, "job.toml", fakeJob)
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
	assert.Equal(t, report.StatusIncomplete, nodes["client-0"].Status)
	assert.Equal(t, report.StatusComplete, nodes["client-1"].Status)
	assert.Equal(t, report.StatusComplete, nodes["server-0"].Status)
	assert.Equal(t, report.StatusIncomplete, r.Job.Status)
	assert.Contains(t, r.Job.Error, "client-0: ")
}

// TestStartWithoutBoard: every node needs a board.
func TestStartWithoutBoard(t *testing.T) {
	h := newHarness(t, "job.toml", fakeJob)
	delete(h.cfg.Boards, "client-1")
	_, err := actors.Start(h.system, h.cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no board for node client-1")
}
