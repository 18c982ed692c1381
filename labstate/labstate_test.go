package labstate

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/scheduler"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func sims(names ...string) []scheduler.Board {
	var bs []scheduler.Board
	for _, n := range names {
		bs = append(bs, scheduler.Board{Name: n, DeviceType: "sim"})
	}
	return bs
}

func job(id string, n int) scheduler.Job {
	return scheduler.Job{ID: id, Name: id, Timeout: time.Minute, Roles: []scheduler.Role{{Name: "a", DeviceType: "sim", Count: n}}}
}

// of returns the effects of type T.
func of[T Effect](effects []Effect) []T {
	var out []T
	for _, e := range effects {
		if x, ok := e.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

func health(m *Machine, board string) scheduler.Health {
	for _, b := range m.Boards(t0) {
		if b.Name == board {
			return b.Health
		}
	}
	return ""
}

func results(status, class string, nodes ...report.Node) *report.Results {
	return &report.Results{Job: report.Job{Status: status, Class: class}, Nodes: nodes}
}

// TestSetHealthDropsHopeless: a board retired by hand drops the queued
// jobs that can no longer run, with the reason, instead of leaving them
// queued forever.
func TestSetHealthDropsHopeless(t *testing.T) {
	m := New(Config{Boards: sims("b0", "b1"), BadAfter: 3})
	fx := m.Step(Submit{Now: t0, Job: job("busy", 2)})
	require.Len(t, of[StartJob](fx), 1)
	fx = m.Step(Submit{Now: t0, Job: job("waits", 2)})
	require.Len(t, of[Waiting](fx), 1, "queued behind busy")

	fx = m.Step(SetHealth{Now: t0, Board: "b1", Health: scheduler.Retired})
	require.Equal(t, []HealthChanged{{Board: "b1", Health: scheduler.Retired, Reason: "set by hand"}}, of[HealthChanged](fx))
	done := of[Done](fx)
	require.Len(t, done, 1)
	assert.Equal(t, "waits", done[0].ID)
	assert.Equal(t, report.StatusIncomplete, done[0].Results.Job.Status)
	assert.Contains(t, done[0].Results.Job.Error, "no boards left in service for it: role a needs 2 boards of type sim; the lab has 1")
	assert.Empty(t, m.Queued())

	// Maintenance boards come back: a job waits for them.
	fx = m.Step(Submit{Now: t0, Job: job("one", 1)})
	require.Empty(t, of[Done](fx))
	fx = m.Step(SetHealth{Now: t0, Board: "b0", Health: scheduler.Maintenance})
	assert.Empty(t, of[Done](fx), "maintenance may serve again")
	assert.Equal(t, []string{"one"}, m.Queued())
}

// TestBadAfter: only infrastructure errors of a node count; BadAfter in a
// row take the board bad; a complete node clears the count; a job error
// (its own timeout) never counts.
func TestBadAfter(t *testing.T) {
	m := New(Config{Boards: sims("b0"), BadAfter: 2})
	run := func(id, class, status string) []Effect {
		fx := m.Step(Submit{Now: t0, Job: job(id, 1)})
		require.Len(t, of[StartJob](fx), 1, id)
		return m.Step(AttemptDone{Now: t0, ID: id, Results: results(report.StatusIncomplete, class,
			report.Node{Name: "a-0", Board: "b0", Status: status, Class: class})})
	}
	run("j1", report.Infrastructure, report.StatusIncomplete)
	run("j2", report.JobError, report.StatusIncomplete)
	run("j3", report.JobError, report.StatusIncomplete)
	assert.Equal(t, scheduler.Good, health(m, "b0"), "job errors never count")
	assert.Equal(t, 1, m.Boards(t0)[0].Failures)
	fx := run("j4", report.Infrastructure, report.StatusIncomplete)
	assert.Equal(t, []HealthChanged{{Board: "b0", Health: scheduler.Bad, Reason: "2 consecutive infrastructure errors"}}, of[HealthChanged](fx))
}

// TestStillOnGoesBadAtOnce: a board that could not be verified off is
// taken out of service at once, whatever its failure count.
func TestStillOnGoesBadAtOnce(t *testing.T) {
	m := New(Config{Boards: sims("b0", "b1"), BadAfter: 3, Retries: 1})
	m.Step(Submit{Now: t0, Job: job("j", 1)})
	fx := m.Step(AttemptDone{Now: t0, ID: "j", StillOn: []string{"b0"},
		Results: results(report.StatusIncomplete, report.Infrastructure, report.Node{Name: "a-0", Board: "b0", Status: report.StatusIncomplete, Class: report.Infrastructure})})
	require.Len(t, of[HealthChanged](fx), 1)
	assert.Equal(t, scheduler.Bad, of[HealthChanged](fx)[0].Health)
	assert.Contains(t, of[HealthChanged](fx)[0].Reason, "could not be verified off")
	start := of[StartJob](fx)
	require.Len(t, start, 1, "retried on another board")
	assert.Equal(t, map[string]string{"a-0": "b1"}, start[0].Boards)
}

// TestRetryAvoidsFailedBoard: a retry avoids the boards that failed, and
// is not queued when no other board could serve.
func TestRetryAvoidsFailedBoard(t *testing.T) {
	m := New(Config{Boards: sims("b0"), BadAfter: 3, Retries: 1})
	m.Step(Submit{Now: t0, Job: job("j", 1)})
	fx := m.Step(AttemptDone{Now: t0, ID: "j",
		Results: results(report.StatusIncomplete, report.Infrastructure, report.Node{Name: "a-0", Board: "b0", Status: report.StatusIncomplete, Class: report.Infrastructure})})
	done := of[Done](fx)
	require.Len(t, done, 1, "no other board: delivered")
	assert.Empty(t, done[0].Results.Job.Attempts)
}

// TestReservation: a reserved board is not scheduled, "why waiting" names
// the holder, another owner is refused, Release frees it.
func TestReservation(t *testing.T) {
	m := New(Config{Boards: sims("b0"), BadAfter: 3})
	fx := m.Step(Reserve{Now: t0, Board: "b0", Owner: "alice", Until: t0.Add(time.Hour)})
	assert.Equal(t, []ReservationChanged{{Board: "b0", Owner: "alice", Until: t0.Add(time.Hour)}}, of[ReservationChanged](fx))
	fx = m.Step(Submit{Now: t0, Job: job("j", 1)})
	assert.Empty(t, of[StartJob](fx))
	w := of[Waiting](fx)
	require.Len(t, w, 1)
	assert.Contains(t, w[0].Explain.Summary, "reserved by alice until")
	assert.Empty(t, w[0].Explain.Never)
	assert.Equal(t, "alice", m.Boards(t0)[0].ReservedBy)

	fx = m.Step(Reserve{Now: t0, Board: "b0", Owner: "bob", Until: t0.Add(time.Hour)})
	refused := of[Refused](fx)
	require.Len(t, refused, 1)
	assert.EqualError(t, refused[0].Err, "reserve b0: reserved by alice until 2026-01-01T13:00:00Z")
	for _, bad := range []Reserve{{Now: t0, Board: "nope", Owner: "a", Until: t0.Add(time.Hour)}, {Now: t0, Board: "b0", Until: t0.Add(time.Hour)},
		{Now: t0, Board: "b0", Owner: "alice", Until: t0}} {
		assert.Len(t, of[Refused](m.Step(bad)), 1, "%+v", bad)
	}

	fx = m.Step(Release{Now: t0, Board: "b0"})
	assert.Equal(t, []ReservationChanged{{Board: "b0"}}, of[ReservationChanged](fx))
	assert.Len(t, of[StartJob](fx), 1, "released: the job starts")

	// An expired reservation no longer holds the board.
	m = New(Config{Boards: sims("b0"), BadAfter: 3})
	m.Step(Reserve{Now: t0, Board: "b0", Owner: "alice", Until: t0.Add(time.Minute)})
	assert.Empty(t, of[StartJob](m.Step(Submit{Now: t0, Job: job("j", 1)})))
	assert.Len(t, of[StartJob](m.Step(Tick{Now: t0.Add(time.Minute)})), 1)
}

// TestHealthCheckCadence: an unknown board is checked before its first
// job, again after Every jobs; a failed check takes it bad and drops the
// jobs that needed it.
func TestHealthCheckCadence(t *testing.T) {
	m := New(Config{Boards: sims("b0"), BadAfter: 3, Checks: map[string]Check{"sim": {Every: 1}}})
	fx := m.Step(Submit{Now: t0, Job: job("j1", 1)})
	checks := of[StartCheck](fx)
	require.Len(t, checks, 1, "checked before its first job")
	assert.Empty(t, of[StartJob](fx))
	fx = m.Step(AttemptDone{Now: t0, ID: checks[0].ID, Results: results(report.StatusComplete, "")})
	assert.Equal(t, []CheckDone{{ID: checks[0].ID, Board: "b0", Results: results(report.StatusComplete, ""), Passed: true}}, of[CheckDone](fx))
	require.Len(t, of[StartJob](fx), 1)
	fx = m.Step(AttemptDone{Now: t0, ID: "j1", Results: results(report.StatusComplete, "", report.Node{Name: "a-0", Board: "b0", Status: report.StatusComplete})})
	checks = of[StartCheck](fx)
	require.Len(t, checks, 1, "due again after one job")

	m.Step(Submit{Now: t0, Job: job("j2", 1)})
	fx = m.Step(AttemptDone{Now: t0, ID: checks[0].ID, Results: results(report.StatusIncomplete, report.Infrastructure)})
	assert.Equal(t, scheduler.Bad, health(m, "b0"))
	done := of[Done](fx)
	require.Len(t, done, 1)
	assert.Equal(t, "j2", done[0].ID)
	assert.Contains(t, done[0].Results.Job.Error, "no boards left in service")
}

// TestCancel: a queued job ends canceled at once; a running one is asked
// to stop and its results follow.
func TestCancel(t *testing.T) {
	m := New(Config{Boards: sims("b0"), BadAfter: 3})
	m.Step(Submit{Now: t0, Job: job("run", 1)})
	m.Step(Submit{Now: t0, Job: job("queued", 1)})
	fx := m.Step(Cancel{Now: t0, ID: "queued", Reason: "by alice"})
	done := of[Done](fx)
	require.Len(t, done, 1)
	assert.Equal(t, report.StatusCanceled, done[0].Results.Job.Status)
	assert.Equal(t, "by alice (while queued)", done[0].Results.Job.Error)
	assert.Equal(t, []Effect{StopJob{ID: "run", Reason: "by alice"}}, m.Step(Cancel{Now: t0, ID: "run", Reason: "by alice"}))
}

// TestSubmitNever: a job the lab can never run ends at once.
func TestSubmitNever(t *testing.T) {
	m := New(Config{Boards: sims("b0"), BadAfter: 3})
	done := of[Done](m.Step(Submit{Now: t0, Job: job("big", 2)}))
	require.Len(t, done, 1)
	assert.Equal(t, report.JobError, done[0].Results.Job.Class)
	assert.Contains(t, done[0].Results.Job.Error, "no boards in service for it: role a needs 2 boards of type sim; the lab has 1")
}

// TestSubmitLaterPlansOncePerBurst: submissions marked Later are queued
// without planning; the first asks for one Plan, which places the whole
// burst; an event that plans in between places them too and the Plan
// that follows does nothing.
func TestSubmitLaterPlansOncePerBurst(t *testing.T) {
	m := New(Config{Boards: sims("b0", "b1", "b2"), BadAfter: 3})
	var asks int
	for _, id := range []string{"j0", "j1", "j2", "j3"} {
		fx := m.Step(Submit{Now: t0, Job: job(id, 1), Later: true})
		asks += len(of[WantPlan](fx))
		assert.Empty(t, of[StartJob](fx), "%s: not planned yet", id)
		assert.Empty(t, of[Waiting](fx), "%s: not planned yet", id)
	}
	assert.Equal(t, 1, asks, "one Plan asked for the burst")
	assert.Equal(t, []string{"j0", "j1", "j2", "j3"}, m.Queued())
	fx := m.Step(Plan{Now: t0})
	assert.Len(t, of[StartJob](fx), 3)
	assert.Equal(t, []string{"j3"}, m.Queued())
	assert.Empty(t, of[StartJob](m.Step(Plan{Now: t0})), "nothing left unplanned")

	// A Tick in between plans what was left; its Plan then does nothing.
	fx = m.Step(Submit{Now: t0, Job: job("j4", 1), Later: true})
	require.Len(t, of[WantPlan](fx), 1, "a new burst asks again")
	fx = m.Step(Tick{Now: t0})
	assert.Len(t, of[Waiting](fx), 2, "the tick planned j3 and j4")
	assert.Empty(t, m.Step(Plan{Now: t0}), "planned by the tick")

	// A job that can never run ends at once, planned or not.
	fx = m.Step(Submit{Now: t0, Job: job("huge", 4), Later: true})
	require.Len(t, of[Done](fx), 1)
}

// TestJobEndExplainsOnlyNewJobs: a job's end (the most frequent event of
// a busy lab) plans the queue but explains only the jobs never explained;
// a Tick explains every waiting job. With 1000 jobs queued, explaining
// them all at every job's end made each end cost the whole queue.
func TestJobEndExplainsOnlyNewJobs(t *testing.T) {
	m := New(Config{Boards: sims("b0", "b1"), BadAfter: 3})
	require.Len(t, of[StartJob](m.Step(Submit{Now: t0, Job: job("busy", 2)})), 1)
	for i := range 1000 {
		m.Step(Submit{Now: t0, Job: job(fmt.Sprintf("w%04d", i), 1), Later: true})
	}
	fx := m.Step(Plan{Now: t0})
	require.Len(t, of[Waiting](fx), 1000, "every new job is explained once")
	fx = m.Step(Submit{Now: t0, Job: job("new", 1)})
	w := of[Waiting](fx)
	require.Len(t, w, 1, "a submission explains only itself")
	assert.Equal(t, "new", w[0].ID)

	fx = m.Step(AttemptDone{Now: t0, ID: "busy", Results: results(report.StatusComplete, "",
		report.Node{Name: "a-0", Board: "b0", Status: report.StatusComplete}, report.Node{Name: "a-1", Board: "b1", Status: report.StatusComplete})})
	require.Len(t, of[StartJob](fx), 2, "the end still places the queue")
	assert.Empty(t, of[Waiting](fx), "the end explains no job explained before")
	assert.Len(t, of[Waiting](m.Step(Tick{Now: t0.Add(time.Second)})), 999, "a tick explains every waiting job")
}
