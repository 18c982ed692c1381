package runner_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/lava"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/runner"
	"github.com/troupe-lab/troupe/sim"
)

// guestJob is a host role and two guests (LAVA's ssh guests) whose tests
// are hostTest and guestTest.
func guestJob(t *testing.T, hostTest, guestTest string) *jobs.Job {
	t.Helper()
	j, err := jobs.Parse("guests.toml", []byte(`name = "guests"
timeout = "3m"
[multinode]
timeout = "2m"
[roles.host]
device_type = "sim"
[roles.guest]
host = "host"
count = 2
[[action]]
type = "boot"
roles = ["host"]
[[action]]
type = "boot"
roles = ["guest"]
address = {message = "ipv4", key = "ipaddr"}
[[action]]
type = "test"
roles = ["host"]
name = "host"
run = '''
`+hostTest+`
'''
[[action]]
type = "test"
roles = ["guest"]
name = "guest"
run = '''
`+guestTest+`
'''
`))
	require.NoError(t, err)
	return j
}

// runGuests runs j on a lab of exactly one sim board: the guests take
// none.
func runGuests(t *testing.T, j *jobs.Job) *report.Results {
	t.Helper()
	l := lab.ForJob(j)
	require.Len(t, l.Boards, 1, "the host's board only")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := runner.Run(ctx, j, l, runner.Options{Out: t.TempDir()})
	require.NoError(t, err)
	require.NotNil(t, r)
	return r
}

func nodeOf(t *testing.T, r *report.Results, name string) report.Node {
	t.Helper()
	for _, n := range r.Nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no node %s in %+v", name, r.Nodes)
	return report.Node{}
}

func caseOf(r *report.Results, node, name string) string {
	for _, c := range r.Tests {
		if c.Node == node && c.Name == name {
			return c.Result
		}
	}
	return ""
}

// TestGuestsRunOnTheHostsBoard: a host and two ssh guests on a lab of one
// board. The host sends its address and lava_start; each guest's tests
// run in a session on the host's board (they see the file the host
// wrote, in its HOME), only after lava_start (the host wrote its marker
// before sending it), with the test shell of their own node, and they
// meet the host at a lava-sync.
func TestGuestsRunOnTheHostsBoard(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	j := guestJob(t, `echo on-the-host > "$HOME/host-file"
lava-send ipv4 ipaddr=127.0.0.1
echo sent > "$HOME/start-sent"
lava-send lava_start
lava-sync clients
lava-test-case host-synced --result pass`,
		`test "$(cat "$HOME/host-file")" = on-the-host && lava-test-case same-board --result pass
test -f "$HOME/start-sent" && lava-test-case after-start --result pass
test "$(troupe-self 2>/dev/null || lava-self)" = "$TROUPE_NODE" && lava-test-case own-node --result pass
lava-sync clients
lava-test-case guest-synced --result pass`)
	r := runGuests(t, j)
	for _, n := range r.Nodes {
		assert.Equal(t, report.StatusComplete, n.Status, "%s: %s", n.Name, n.Error)
		assert.Equal(t, "sim-0", n.Board, "%s runs on the host's board", n.Name)
	}
	assert.Equal(t, report.Pass, caseOf(r, "host-0", "host-synced"))
	for _, g := range []string{"guest-0", "guest-1"} {
		for _, c := range []string{"same-board", "after-start", "own-node", "guest-synced"} {
			assert.Equal(t, report.Pass, caseOf(r, g, c), "%s: %s", g, c)
		}
	}
}

// TestGuestsNeverStartWithoutLavaStart: a host that sends its address but
// ends without lava_start ends its guests incomplete at once (not at the
// MultiNode timeout), with the reason, and no guest test ran.
func TestGuestsNeverStartWithoutLavaStart(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	j := guestJob(t, `lava-send ipv4 ipaddr=127.0.0.1`, `lava-test-case ran --result pass`)
	start := time.Now()
	r := runGuests(t, j)
	assert.Less(t, time.Since(start), j.MultinodeTimeout, "the guests end when the host does, not at their timeout")
	assert.Equal(t, report.StatusComplete, nodeOf(t, r, "host-0").Status)
	for _, g := range []string{"guest-0", "guest-1"} {
		n := nodeOf(t, r, g)
		assert.Equal(t, report.StatusIncomplete, n.Status)
		assert.Equal(t, report.JobError, n.Class)
		assert.Contains(t, n.Error, "role host did not send lava_start")
		assert.Contains(t, n.Error, "host-0")
		assert.Empty(t, caseOf(r, g, "ran"), "a guest test never starts before lava_start")
	}
}

// TestGuestsEndWhenTheHostDies: the host's board dies under its test
// after lava_start: the guests' sessions end with it, promptly, and they
// are incomplete saying so.
func TestGuestsEndWhenTheHostDies(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	j := guestJob(t, `lava-send ipv4 ipaddr=127.0.0.1
lava-send lava_start
lava-wait guests-up
lava-test-raise host-gone`,
		`lava-send guests-up
sleep 600`)
	start := time.Now()
	r := runGuests(t, j)
	assert.Less(t, time.Since(start), time.Minute, "the guests end with the host's board")
	assert.Equal(t, report.StatusIncomplete, nodeOf(t, r, "host-0").Status)
	for _, g := range []string{"guest-0", "guest-1"} {
		n := nodeOf(t, r, g)
		assert.Equal(t, report.StatusIncomplete, n.Status, g)
		assert.Contains(t, n.Error, "host node host-0 ended", g)
	}
}

// TestLAVAGuestsRun: the LAVA job of a host and two ssh guests
// (examples/lava-ssh-guests.yaml, from LAVA's documented one) imports
// and runs on a lab of one sim board: the guests' deploy waits for the
// host's address, their boot (method ssh) logs in to the host's board,
// and their tests run there and meet the host at a lava-sync.
func TestLAVAGuestsRun(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	data, err := os.ReadFile("../examples/lava-ssh-guests.yaml")
	require.NoError(t, err)
	j, err := lava.Import(filepath.Join(t.TempDir(), "guests.yaml"), data)
	require.NoError(t, err)
	r := runGuests(t, j)
	for _, n := range r.Nodes {
		assert.Equal(t, report.StatusComplete, n.Status, "%s: %s", n.Name, n.Error)
	}
	for _, g := range []string{"guest-0", "guest-1"} {
		assert.Equal(t, report.Pass, caseOf(r, g, "same-board"), g)
	}
}

// TestHostKeepsItsBoardForItsGuests: a host whose tests end well before
// its guests' keeps its board on until they have ended: the guests'
// tests, still running in their sessions, complete.
func TestHostKeepsItsBoardForItsGuests(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	j := guestJob(t, `lava-send ipv4 ipaddr=127.0.0.1
lava-send lava_start`,
		`sleep 2
lava-test-case outlived-the-host-test --result pass`)
	r := runGuests(t, j)
	for _, n := range r.Nodes {
		assert.Equal(t, report.StatusComplete, n.Status, "%s: %s", n.Name, n.Error)
	}
	for _, g := range []string{"guest-0", "guest-1"} {
		assert.Equal(t, report.Pass, caseOf(r, g, "outlived-the-host-test"), g)
	}
}

// noSessions is a board whose backend opens no sessions (as a QEMU
// board's): only actors.Backend's methods.
type noSessions struct{ actors.Backend }

// TestGuestsOfABoardWithoutSessions: a host board that cannot host
// guests ends its guests incomplete saying so, as the job's fault (not
// retried, not the board's).
func TestGuestsOfABoardWithoutSessions(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	j := guestJob(t, `lava-send ipv4 ipaddr=127.0.0.1
lava-send lava_start`, `true`)
	l := lab.ForJob(j)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := runner.Run(ctx, j, l, runner.Options{Out: t.TempDir(), Open: func(_ string, b lab.Board, dir string) (actors.Backend, error) {
		sb, err := sim.New(sim.Options{Name: b.Name, Dir: dir})
		return noSessions{sb}, err
	}})
	require.NoError(t, err)
	assert.Equal(t, report.StatusComplete, nodeOf(t, r, "host-0").Status)
	for _, g := range []string{"guest-0", "guest-1"} {
		n := nodeOf(t, r, g)
		assert.Equal(t, report.StatusIncomplete, n.Status)
		assert.Equal(t, report.JobError, n.Class)
		assert.Contains(t, n.Error, "the board of host node host-0 cannot host ssh guests")
	}
	assert.Len(t, r.Job.Attempts, 0, "not retried")
}
