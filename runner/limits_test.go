package runner_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/runner"
)

// TestLabSandboxLimits: a lab file's sandbox limits reach its sim boards:
// a job's fork bomb fails inside its board, within the lab's bound, and
// the job goes on to its next test.
func TestLabSandboxLimits(t *testing.T) {
	l, err := lab.Parse("lab.toml", []byte(`sandbox_processes = 40
sandbox_file_size = 2097152
[[board]]
name = "sim-0"
device_type = "sim"
`))
	require.NoError(t, err)
	j, err := jobs.Parse("job.toml", []byte(`name = "bomb"
timeout = "1m"
[roles.node]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "bomb"
run = '''
troupe-test-case limits --shell grep -Eq "^Max processes +40 +40 |^Max file size +2097152 +2097152 " /proc/self/limits
(while :; do sleep 30 & done) 2>/dev/null
# Counted and ended with built-ins: nothing can fork now.
n=0
for p in /proc/[0-9]*; do
	n=$((n+1))
	read -r c < "$p/comm" && [ "$c" = sleep ] && kill -9 "${p#/proc/}"
done 2>/dev/null
troupe-test-case bounded --shell test "$n" -le 40
'''
[[action]]
type = "test"
name = "after"
run = "troupe-test-case works --shell true"
`))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := runner.Run(ctx, j, l, runner.Options{Out: t.TempDir()})
	require.NoError(t, err)
	require.Equal(t, report.StatusComplete, r.Job.Status, "%+v", r)
	got := map[string]string{}
	for _, c := range r.Tests {
		got[c.Suite+"/"+c.Name] = c.Result
	}
	for _, k := range []string{"bomb/limits", "bomb/bounded", "after/works"} {
		assert.Equal(t, report.Pass, got[k], "%s in %v", k, got)
	}
}
