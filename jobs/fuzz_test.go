package jobs_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
)

// checkJob asserts the invariants every parsed job satisfies.
func checkJob(t *testing.T, j *jobs.Job) {
	t.Helper()
	require.NotEmpty(t, j.Name)
	assert.Positive(t, j.Timeout)
	assert.Positive(t, j.MultinodeTimeout)
	assert.True(t, j.Priority >= 0 && j.Priority <= 100, "priority %d", j.Priority)
	require.NotEmpty(t, j.Roles)
	require.NotEmpty(t, j.Actions)
	total := 0
	for i, r := range j.Roles {
		assert.NotEmpty(t, r.Name)
		assert.NotContains(t, r.Name, "-")
		assert.NotEmpty(t, r.DeviceType)
		assert.GreaterOrEqual(t, r.Count, 1)
		assert.Positive(t, r.Timeout)
		if i > 0 {
			assert.Less(t, j.Roles[i-1].Name, r.Name)
		}
		total += r.Count
	}
	assert.LessOrEqual(t, total, jobs.MaxNodes)
	assert.Len(t, j.Nodes(), total)
	tests := map[string]bool{}
	for i, a := range j.Actions {
		assert.Equal(t, i, a.Index)
		assert.Contains(t, []jobs.ActionType{jobs.Deploy, jobs.Boot, jobs.Test}, a.Type)
		assert.GreaterOrEqual(t, int64(a.Timeout), int64(0))
		require.NotEmpty(t, a.Roles)
		for _, r := range a.Roles {
			_, ok := j.Role(r)
			assert.True(t, ok, "undefined role %q", r)
		}
		if a.Type == jobs.Test {
			assert.NotEmpty(t, a.Name)
			assert.NotEmpty(t, strings.TrimSpace(a.Run))
			assert.False(t, tests[a.Name], "duplicate test %q", a.Name)
			tests[a.Name] = true
		} else {
			assert.Empty(t, a.Name)
			assert.Empty(t, a.Run)
		}
		if a.Type != jobs.Deploy {
			assert.Empty(t, a.Image)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte(minimal))
	f.Add([]byte("name = \"x\"\n[roles.a]\ndevice_type = \"s\"\n[roles.a.context]\nc = \"1\"\n[[action]]\ntype = \"deploy\"\nretries = 1\nimages = {files = {nfsrootfs = \"r.tgz\"}}\n[[action]]\ntype = \"boot\"\ncommands = \"nfs\"\nlogin = {prompt = \"x login:\", user = \"u\"}\n[secrets]\nT = \"v\"\n[context]\na = \"b\"\n"))
	f.Add([]byte(readFile(f, "testdata/smoke.toml")))
	f.Add([]byte("name = \"x\"\n[roles]\na = {device_type = \"s\", count = 2}\n[[action]]\ntype = \"test\"\nname = \"t\"\nrun = '''\nx\n'''\n"))
	f.Add([]byte("name = \"x\"\naction = [{type = \"boot\", roles = [\"a\"]}]\n[roles.a]\ndevice_type = \"s\"\ntags = [\"usb\",\n\"x\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var j *jobs.Job
		var err error
		cost := allocated(func() { j, err = jobs.Parse("dir/job.toml", data) })
		require.Less(t, cost, uint64(maxCost), "parsing %d bytes allocated %d", len(data), cost)
		if err != nil {
			var errs jobs.Errors
			require.ErrorAs(t, err, &errs)
			for _, e := range errs {
				assert.Equal(t, "dir/job.toml", e.File)
				assert.GreaterOrEqual(t, e.Line, 0)
			}
			return
		}
		checkJob(t, j)
		var buf bytes.Buffer
		require.NoError(t, j.Encode(&buf))
		again, err := jobs.Parse("dir/job.toml", buf.Bytes())
		require.NoError(t, err, buf.String())
		assert.Equal(t, withoutLines(j), withoutLines(again))
	})
}
