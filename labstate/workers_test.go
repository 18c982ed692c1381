package labstate

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/scheduler"
)

func status(m *Machine, board string) BoardStatus {
	for _, b := range m.Boards(t0) {
		if b.Name == board {
			return b
		}
	}
	return BoardStatus{}
}

// TestWorkerBoardsJoin: with no board of its own, a workers lab queues a
// job until a worker brings the boards, then places it across workers.
func TestWorkerBoardsJoin(t *testing.T) {
	m := New(Config{Workers: true, BadAfter: 1})
	fx := m.Step(Submit{Now: t0, Job: job("j", 3)})
	require.Empty(t, of[Done](fx), "a workers lab waits for boards to join")
	require.Len(t, of[Waiting](fx), 1)
	assert.Equal(t, []string{"j"}, m.Queued())

	fx = m.Step(BoardsJoined{Now: t0, Worker: "w1", Boards: sims("a0", "a1")})
	assert.Empty(t, of[StartJob](fx), "2 boards are not enough")
	assert.Len(t, of[ConnectionChanged](fx), 2)
	fx = m.Step(BoardsJoined{Now: t0, Worker: "w2", Boards: sims("b0")})
	starts := of[StartJob](fx)
	require.Len(t, starts, 1, "the group spans both workers")
	var used []string
	for _, b := range starts[0].Boards {
		used = append(used, b)
	}
	assert.ElementsMatch(t, []string{"a0", "a1", "b0"}, used)
	assert.Equal(t, "w2", status(m, "b0").Worker)
}

// TestWorkerLostWhileRunning: a lost worker's boards go offline, the nodes
// on them are lost, the job is retried on other boards, and the lost
// boards are never counted toward bad_after.
func TestWorkerLostWhileRunning(t *testing.T) {
	m := New(Config{Workers: true, BadAfter: 1, Retries: 1})
	m.Step(BoardsJoined{Now: t0, Worker: "w1", Boards: sims("a0", "a1")})
	m.Step(BoardsJoined{Now: t0, Worker: "w2", Boards: sims("b0", "b1")})
	fx := m.Step(Submit{Now: t0, Job: job("j", 2)})
	starts := of[StartJob](fx)
	require.Len(t, starts, 1)
	require.Equal(t, map[string]string{"a-0": "a0", "a-1": "a1"}, starts[0].Boards)

	fx = m.Step(WorkerLost{Now: t0, Worker: "w1"})
	assert.Equal(t, []LoseNodes{{ID: "j", Boards: []string{"a0", "a1"}, Reason: "worker w1 lost"}}, of[LoseNodes](fx))
	assert.Len(t, of[ConnectionChanged](fx), 2)
	assert.True(t, status(m, "a0").Offline)

	fx = m.Step(AttemptDone{Now: t0, ID: "j", Results: results(report.StatusIncomplete, report.Infrastructure,
		report.Node{Name: "a-0", Board: "a0", Status: report.StatusIncomplete, Class: report.Infrastructure, Error: "worker w1 lost"},
		report.Node{Name: "a-1", Board: "a1", Status: report.StatusIncomplete, Class: report.Infrastructure, Error: "worker w1 lost"})})
	assert.Empty(t, of[HealthChanged](fx), "a lost worker's boards are never counted bad")
	assert.Equal(t, scheduler.Good, health(m, "a0"))
	assert.Zero(t, status(m, "a0").Failures)
	starts = of[StartJob](fx)
	require.Len(t, starts, 1, "retried at once on the other worker's boards")
	assert.Equal(t, map[string]string{"a-0": "b0", "a-1": "b1"}, starts[0].Boards)
}

// TestWorkerLostWhileQueued: a job waiting for a lost worker's boards is
// not dropped (they may come back); it runs once the worker rejoins.
func TestWorkerLostWhileQueued(t *testing.T) {
	m := New(Config{Workers: true, BadAfter: 1})
	m.Step(BoardsJoined{Now: t0, Worker: "w1", Boards: sims("a0", "a1")})
	m.Step(Submit{Now: t0, Job: job("busy", 1)})
	fx := m.Step(Submit{Now: t0, Job: job("j", 2)})
	require.Empty(t, of[StartJob](fx))
	fx = m.Step(WorkerLost{Now: t0, Worker: "w1"})
	assert.Empty(t, of[Done](fx), "offline boards are not hopeless")
	assert.Len(t, of[LoseNodes](fx), 1, "the running one loses its node")
	fx = m.Step(AttemptDone{Now: t0, ID: "busy", Results: results(report.StatusIncomplete, report.Infrastructure,
		report.Node{Name: "a-0", Board: "a0", Status: report.StatusIncomplete, Class: report.Infrastructure, Error: "worker w1 lost"})})
	assert.Empty(t, of[StartJob](fx), "offline boards are not placed")
	fx = m.Step(Tick{Now: t0}) // a job's end explains only new jobs; a tick, all
	w := of[Waiting](fx)
	require.NotEmpty(t, w)
	assert.Contains(t, w[len(w)-1].Explain.Summary, "worker w1 (offline)", "why waiting names the worker")
	fx = m.Step(BoardsJoined{Now: t0, Worker: "w1", Boards: sims("a0", "a1")})
	require.Len(t, of[StartJob](fx), 1, "runs once the worker is back")
	assert.False(t, status(m, "a0").Offline)
}

// TestWorkerLostDuringHealthCheck: a check cut by its worker's loss takes
// the board neither good nor bad.
func TestWorkerLostDuringHealthCheck(t *testing.T) {
	m := New(Config{Workers: true, BadAfter: 1, Checks: map[string]Check{"sim": {Timeout: 1e9}}})
	fx := m.Step(BoardsJoined{Now: t0, Worker: "w1", Boards: sims("a0")})
	checks := of[StartCheck](fx)
	require.Len(t, checks, 1)
	m.Step(WorkerLost{Now: t0, Worker: "w1"})
	fx = m.Step(AttemptDone{Now: t0, ID: checks[0].ID, Results: results(report.StatusIncomplete, report.Infrastructure,
		report.Node{Name: "n", Board: "a0", Status: report.StatusIncomplete, Class: report.Infrastructure})})
	assert.Empty(t, of[HealthChanged](fx))
	assert.Equal(t, scheduler.Unknown, health(m, "a0"))
	assert.Empty(t, of[StartCheck](fx), "no check on an offline board")
}

// TestWorkerCannotTakeLabBoard: a worker listing a board of the lab file
// does not take it over.
func TestWorkerCannotTakeLabBoard(t *testing.T) {
	m := New(Config{Boards: sims("local"), Workers: true})
	fx := m.Step(BoardsJoined{Now: t0, Worker: "w1", Boards: sims("local", "w1-a")})
	assert.Equal(t, []ConnectionChanged{{Board: "w1-a", Worker: "w1"}}, of[ConnectionChanged](fx))
	assert.Empty(t, status(m, "local").Worker)
	m.Step(WorkerLost{Now: t0, Worker: "w1"})
	assert.False(t, status(m, "local").Offline)
	assert.True(t, status(m, "w1-a").Offline)
}

// TestGroupOnOneWorker: the boards a worker brings are its (Worker), and a
// group goes to one worker's boards when one has enough, though lab order
// puts the lab file's board and another worker's first.
func TestGroupOnOneWorker(t *testing.T) {
	m := New(Config{Boards: sims("s0"), BadAfter: 1})
	m.Step(BoardsJoined{Now: t0, Worker: "w1", Boards: sims("a0")})
	m.Step(BoardsJoined{Now: t0, Worker: "w2", Boards: sims("b0", "b1", "b2")})
	assert.Equal(t, "", status(m, "s0").Worker)
	assert.Equal(t, "w1", status(m, "a0").Worker)
	starts := of[StartJob](m.Step(Submit{Now: t0, Job: job("j", 3)}))
	require.Len(t, starts, 1)
	assert.Equal(t, map[string]string{"a-0": "b0", "a-1": "b1", "a-2": "b2"}, starts[0].Boards)

	// A board that moves to another worker is that worker's.
	m.Step(BoardsJoined{Now: t0, Worker: "w2", Boards: sims("b0", "b1", "b2", "a0")})
	assert.Equal(t, "w2", status(m, "a0").Worker)
}
