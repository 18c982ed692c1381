package actors_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/scheduler"
	"github.com/troupe-lab/troupe/sim"
)

// TestLabHealthCheckInterval: a board is checked before its first job, and
// again once its last check is older than the interval (fake clock).
func TestLabHealthCheckInterval(t *testing.T) {
	defer goleak.VerifyNone(t, leakOptions...)
	dir := t.TempDir()
	check, err := jobs.Parse(filepath.Join(dir, "health.toml"), []byte(`name = "health"
[roles.dut]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "check"
run = "troupe-test-case alive --result pass"`))
	require.NoError(t, err)
	job, err := jobs.Parse(filepath.Join(dir, "job.toml"), []byte(`name = "work"
[roles.n]
device_type = "sim"
[[action]]
type = "boot"`))
	require.NoError(t, err)
	l := &lab.Lab{File: "lab.toml", Retries: 1, BadAfter: 3,
		Boards:       []lab.Board{{Name: "sim-a", DeviceType: "sim", Backend: lab.Sim}},
		HealthChecks: []lab.HealthCheck{{DeviceType: "sim", Job: check, Interval: time.Hour}}}

	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	defer system.Shutdown()
	clock := newFakeClock(newSignal())
	healthOut := filepath.Join(dir, "health")
	labActor := actors.StartLab(system, actors.LabConfig{
		Lab: l,
		Open: func(_ string, b lab.Board) (actors.Backend, error) {
			return sim.New(sim.Options{Name: b.Name, Dir: filepath.Join(dir, "boards", b.Name), Unsandboxed: true})
		},
		Clock: clock, HealthOut: healthOut,
	})
	defer func() { assert.NoError(t, labActor.Stop()) }()

	run := func(name string) *report.Results {
		book, err := logbook.New(filepath.Join(dir, name), nil)
		require.NoError(t, err)
		defer book.Close()
		done := make(chan *report.Results, 1)
		labActor.Submit(actors.Submission{Job: job, Book: book, Done: func(r *report.Results) { done <- r }})
		select {
		case r := <-done:
			return r
		case <-time.After(30 * time.Second):
			t.Fatalf("job %s did not end", name)
			return nil
		}
	}
	checks := func() int {
		m, err := filepath.Glob(filepath.Join(healthOut, "sim-a-*", "results.json"))
		require.NoError(t, err)
		return len(m)
	}

	r := run("first")
	assert.Equal(t, report.StatusComplete, r.Job.Status)
	assert.Equal(t, 1, checks(), "checked before the first job")

	r = run("second")
	assert.Equal(t, report.StatusComplete, r.Job.Status)
	assert.Equal(t, 1, checks(), "no new check within the interval")

	clock.advance(2 * time.Hour)
	r = run("third")
	assert.Equal(t, report.StatusComplete, r.Job.Status)
	assert.Equal(t, 2, checks(), "checked again once the last check is older than the interval")
	_, err = os.Stat(filepath.Join(healthOut, "sim-a-2", "logs", "dut-0.log"))
	assert.NoError(t, err, "the check's console log is kept")
}

// simJob is a one-node job on a sim board; extra is appended to its boot
// action.
func simJob(t *testing.T, name, extra string) *jobs.Job {
	t.Helper()
	j, err := jobs.Parse(filepath.Join(t.TempDir(), name+".toml"), []byte(`name = "`+name+`"
[roles.n]
device_type = "sim"
[[action]]
type = "boot"
`+extra))
	require.NoError(t, err)
	return j
}

// testLab is a lab actor on sim boards, for the tests of the lab itself.
type testLab struct {
	*actors.Lab
	t   *testing.T
	dir string
}

func startTestLab(t *testing.T, l *lab.Lab, mod func(*actors.LabConfig)) *testLab {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOptions...) })
	dir := t.TempDir()
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	t.Cleanup(system.Shutdown)
	cfg := actors.LabConfig{
		Lab: l,
		Open: func(_ string, b lab.Board) (actors.Backend, error) {
			return sim.New(sim.Options{Name: b.Name, Dir: filepath.Join(dir, "boards", b.Name), BootDelay: 5 * time.Millisecond})
		},
		Retries: l.Retries, BadAfter: l.BadAfter, HealthOut: filepath.Join(dir, "health"),
		Fatal: func(err error) { t.Errorf("lab crashed: %v", err) },
	}
	if mod != nil {
		mod(&cfg)
	}
	la := actors.StartLab(system, cfg)
	t.Cleanup(func() { assert.NoError(t, la.Stop()) })
	return &testLab{Lab: la, t: t, dir: dir}
}

// submit queues j; the returned channel gets its results.
func (l *testLab) submit(s actors.Submission) <-chan *report.Results {
	l.t.Helper()
	book, err := logbook.New(filepath.Join(l.dir, "jobs", s.Job.Name), nil)
	require.NoError(l.t, err)
	l.t.Cleanup(func() { _ = book.Close() })
	done := make(chan *report.Results, 2)
	s.Book = book
	s.Done = func(r *report.Results) { done <- r }
	l.Submit(s)
	return done
}

func waitResults(t *testing.T, done <-chan *report.Results) *report.Results {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("the job did not end")
		return nil
	}
}

func boardStatus(t *testing.T, l *testLab, name string) actors.BoardStatus {
	t.Helper()
	bs, err := l.Boards()
	require.NoError(t, err)
	for _, b := range bs {
		if b.Name == name {
			return b
		}
	}
	t.Fatalf("no board %s", name)
	return actors.BoardStatus{}
}

func simLab(names ...string) *lab.Lab {
	l := &lab.Lab{File: "lab.toml", Retries: 0, BadAfter: 1}
	for _, n := range names {
		l.Boards = append(l.Boards, lab.Board{Name: n, DeviceType: "sim", Backend: lab.Sim})
	}
	return l
}

// TestLabSetHealthDropsQueued: retiring a board by hand ends the queued
// jobs that can no longer run at once, with why, instead of leaving them
// queued until something else happens (here: the running job ends).
func TestLabSetHealthDropsQueued(t *testing.T) {
	l := startTestLab(t, simLab("sim-a"), nil)
	started := make(chan struct{}, 1)
	running := l.submit(actors.Submission{ID: "running", Job: simJob(t, "running", `[[action]]
type = "test"
name = "wait"
run = "sleep 100"
`), Started: func(map[string]string) { started <- struct{}{} }})
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the first job did not start")
	}
	waiting := make(chan scheduler.Explanation, 100)
	queued := l.submit(actors.Submission{Job: simJob(t, "queued", ""), Waiting: func(e scheduler.Explanation) {
		select {
		case waiting <- e:
		default:
		}
	}})
	select {
	case e := <-waiting:
		assert.Contains(t, e.Summary, "busy (running)")
	case <-time.After(10 * time.Second):
		t.Fatal("the job was not told why it waits")
	}
	l.SetHealth("sim-a", scheduler.Retired)
	r := waitResults(t, queued)
	assert.Equal(t, report.StatusIncomplete, r.Job.Status)
	assert.Contains(t, r.Job.Error, "no boards left in service for it: role n needs 1 boards of type sim; the lab has 0")
	select {
	case r := <-running:
		t.Fatalf("the running job ended first: %+v", r.Job)
	default:
	}
	l.Cancel("running", "test over")
	assert.Equal(t, report.StatusCanceled, waitResults(t, running).Job.Status)
}

// TestLabEventsPanicEndsJobOnce: a panicking Events callback ends its job
// with the panic as the error; the job is not re-run, the lab goes on.
func TestLabEventsPanicEndsJobOnce(t *testing.T) {
	l := startTestLab(t, simLab("sim-a"), nil)
	var started atomic.Int32
	done := l.submit(actors.Submission{Job: simJob(t, "events", ""),
		Events:  func(actors.Event) { panic("events on fire") },
		Started: func(map[string]string) { started.Add(1) }})
	r := waitResults(t, done)
	assert.Equal(t, report.StatusIncomplete, r.Job.Status)
	assert.Contains(t, r.Job.Error, "Events callback panicked: events on fire")
	assert.Equal(t, int32(1), started.Load(), "the job ran once")
	select {
	case r := <-done:
		t.Fatalf("a second result: %+v", r.Job)
	default:
	}
	assert.Equal(t, scheduler.Good, boardStatus(t, l, "sim-a").Health, "not the board's fault")
	r = waitResults(t, l.submit(actors.Submission{Job: simJob(t, "next", "")}))
	assert.Equal(t, report.StatusComplete, r.Job.Status, r.Job.Error)
}

// TestLabActorPanicIsReported: a crash of the lab actor itself is reported
// through Fatal and the lab is not restarted with a wiped queue.
func TestLabActorPanicIsReported(t *testing.T) {
	fatal := make(chan error, 1)
	l := startTestLab(t, simLab("sim-a"), func(c *actors.LabConfig) { c.Fatal = func(err error) { fatal <- err } })
	require.NoError(t, l.Reserve("sim-a", "alice", time.Now().Add(time.Hour)))
	l.Submit(actors.Submission{ID: "broken"}) // no job: the lab actor panics on it
	select {
	case err := <-fatal:
		assert.Contains(t, err.Error(), "lab scheduler crashed handling *actors.submitJob")
	case <-time.After(10 * time.Second):
		t.Fatal("the crash was not reported")
	}
	_, err := l.Boards()
	assert.Error(t, err, "the lab actor is stopped, not restarted with wiped state")
}

// TestLabOwnTimeoutIsNotTheBoards: a boot timeout the job sets itself
// (1ns) is a job error and never takes the board bad (bad_after 1).
func TestLabOwnTimeoutIsNotTheBoards(t *testing.T) {
	l := startTestLab(t, simLab("sim-a"), nil)
	r := waitResults(t, l.submit(actors.Submission{Job: simJob(t, "hasty", `timeout = "1ns"`)}))
	assert.Equal(t, report.StatusIncomplete, r.Job.Status)
	assert.Equal(t, report.JobError, r.Job.Class, r.Job.Error)
	require.Len(t, r.Nodes, 1)
	assert.Equal(t, report.JobError, r.Nodes[0].Class)
	st := boardStatus(t, l, "sim-a")
	assert.Equal(t, scheduler.Good, st.Health)
	assert.Zero(t, st.Failures)
}

// lyingPower is a board whose power switch answers OK to "off" and leaves
// it on, as a lying PDU does.
type lyingPower struct{ actors.Backend }

func (lyingPower) Off(context.Context) error { return nil }

// TestLabPowerOffNotVerified: a board still on after release ends the job
// incomplete (infrastructure, naming the board and "still on") and goes
// bad at once.
func TestLabPowerOffNotVerified(t *testing.T) {
	var mu sync.Mutex
	var opened []actors.Backend
	l := startTestLab(t, &lab.Lab{File: "lab.toml", BadAfter: 3,
		Boards: []lab.Board{{Name: "sim-a", DeviceType: "sim", Backend: lab.Sim}}}, func(c *actors.LabConfig) {
		open := c.Open
		c.Open = func(node string, b lab.Board) (actors.Backend, error) {
			be, err := open(node, b)
			if err != nil {
				return nil, err
			}
			mu.Lock()
			opened = append(opened, be)
			mu.Unlock()
			return lyingPower{be}, nil
		}
	})
	t.Cleanup(func() { // the lie is over: really off
		mu.Lock()
		defer mu.Unlock()
		for _, be := range opened {
			_ = be.Off(context.Background())
		}
	})
	r := waitResults(t, l.submit(actors.Submission{Job: simJob(t, "lied-to", "")}))
	assert.Equal(t, report.StatusIncomplete, r.Job.Status)
	assert.Equal(t, report.Infrastructure, r.Job.Class)
	assert.Contains(t, r.Job.Error, "sim-a still on")
	require.Len(t, r.Nodes, 1)
	assert.Contains(t, r.Nodes[0].Error, "board sim-a still on")
	assert.Equal(t, scheduler.Bad, boardStatus(t, l, "sim-a").Health, "bad at once, not after bad_after")
}

// TestLabReserveRelease: the API of reservations.
func TestLabReserveRelease(t *testing.T) {
	changes := make(chan string, 10)
	l := startTestLab(t, simLab("sim-a"), func(c *actors.LabConfig) {
		c.ReservationChanged = func(board, owner string, _ time.Time) { changes <- board + ":" + owner }
	})
	until := time.Now().Add(time.Hour).Round(time.Second)
	require.NoError(t, l.Reserve("sim-a", "alice", until))
	st := boardStatus(t, l, "sim-a")
	assert.Equal(t, "alice", st.ReservedBy)
	assert.True(t, until.Equal(st.ReservedUntil))
	assert.ErrorContains(t, l.Reserve("sim-a", "bob", until), "reserved by alice")
	assert.ErrorContains(t, l.Reserve("nope", "bob", until), "no such board")
	waiting := make(chan scheduler.Explanation, 100)
	done := l.submit(actors.Submission{Job: simJob(t, "after", ""), Waiting: func(e scheduler.Explanation) {
		select {
		case waiting <- e:
		default:
		}
	}})
	select {
	case e := <-waiting:
		assert.Contains(t, e.Summary, "1 reserved by alice until", "why waiting names who holds the board")
	case <-time.After(10 * time.Second):
		t.Fatal("the job was not told why it waits")
	}
	require.NoError(t, l.Release("sim-a"))
	r := waitResults(t, done)
	assert.Equal(t, report.StatusComplete, r.Job.Status, r.Job.Error)
	assert.Empty(t, boardStatus(t, l, "sim-a").ReservedBy)
	close(changes)
	var got []string
	for c := range changes {
		got = append(got, c)
	}
	assert.Equal(t, []string{"sim-a:alice", "sim-a:"}, got)
}

// TestLabScriptKillingItsShellIsNotTheBoards: a test script that kills its
// own shell fails the test; the board stays in service (bad_after 1).
func TestLabScriptKillingItsShellIsNotTheBoards(t *testing.T) {
	l := startTestLab(t, simLab("sim-a"), nil)
	r := waitResults(t, l.submit(actors.Submission{Job: simJob(t, "suicide", `[[action]]
type = "test"
name = "die"
run = "kill -KILL $PPID; sleep 100"
`)}))
	assert.Equal(t, report.StatusIncomplete, r.Job.Status)
	require.Len(t, r.Nodes, 1)
	assert.Contains(t, r.Nodes[0].Error, "shell died")
	assert.Equal(t, report.TestFailure, r.Nodes[0].Class)
	st := boardStatus(t, l, "sim-a")
	assert.Equal(t, scheduler.Good, st.Health)
	assert.Zero(t, st.Failures)
}
