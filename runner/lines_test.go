package runner_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/runner"
)

// TestLines: Options.Lines gets every job's console lines, each with its
// job, all of them before RunMany returns.
func TestLines(t *testing.T) {
	defer goleak.VerifyNone(t)
	var js []*jobs.Job
	for _, name := range []string{"one", "two"} {
		j, err := jobs.Parse(name+".toml", []byte(`name = "`+name+`"
[roles.a]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "t"
run = "echo \"line of $TROUPE_JOB\""
`))
		require.NoError(t, err)
		js = append(js, j)
	}
	var mu sync.Mutex
	got := map[string][]string{}
	returned := false
	rs, err := runner.RunMany(context.Background(), js, nil, runner.Options{
		Out: t.TempDir(),
		Lines: func(job string, e logbook.Entry) {
			mu.Lock()
			defer mu.Unlock()
			assert.False(t, returned, "a line after RunMany returned")
			got[job] = append(got[job], e.Node+" "+e.Text)
		},
	})
	require.NoError(t, err)
	mu.Lock()
	returned = true
	defer mu.Unlock()
	require.Len(t, rs, 2)
	assert.Contains(t, got["one"], "a-0 line of one")
	assert.Contains(t, got["two"], "a-0 line of two")
	assert.NotContains(t, got["one"], "a-0 line of two")
}
