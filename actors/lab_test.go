package actors_test

import (
	"log/slog"
	"os"
	"path/filepath"
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
