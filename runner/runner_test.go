package runner_test

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/runner"
	"github.com/troupe-lab/troupe/sim"
)

// slowJob runs a test that lasts far longer than the test around it: a
// lab left running would still hold its board when RunMany returned.
func slowJob(t *testing.T, name string) *jobs.Job {
	t.Helper()
	j, err := jobs.Parse(name+".toml", []byte(`name = "`+name+`"
timeout = "5m"

[roles.node]
device_type = "sim"

[[action]]
type = "boot"

[[action]]
type = "test"
name = "wait"
run = "sleep 240"
`))
	require.NoError(t, err)
	return j
}

// TestRunManyUnwritableResultsLeaveNoLab: when the results directory of a
// later job cannot be made, RunMany fails without leaving a lab running
// (jobs already handed to it kept their boards powered on, and the actor
// system ran on, after RunMany had returned).
func TestRunManyUnwritableResultsLeaveNoLab(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	out := t.TempDir()
	// The second job's results directory is a file: its logs cannot be made.
	require.NoError(t, os.WriteFile(filepath.Join(out, "second"), nil, 0o644))
	var opened atomic.Int32
	opts := runner.Options{Out: out, Open: func(_ string, b lab.Board, dir string) (actors.Backend, error) {
		opened.Add(1)
		return sim.New(sim.Options{Name: b.Name, Dir: dir})
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rs, err := runner.RunMany(ctx, []*jobs.Job{slowJob(t, "first"), slowJob(t, "second")}, nil, opts)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "logs of second")
	assert.Nil(t, rs)
	assert.Zero(t, opened.Load(), "no board is powered on for a run that cannot write its results")
}
