package scenario_test

import (
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/scenario"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(full))
	f.Add([]byte(inline))
	f.Add([]byte("name = \"m\"\nseed = 0\njob = \"j.yaml\"\n"))
	f.Add([]byte("name = \"x\"\nseed = 1\njob = {name = \"j\", roles = {a = {device_type = \"s\"}}, action = [{type = \"boot\"}]}\nfault = [{role = \"a\", kind = \"console-noise\", rate = 1e9, when = \"console:(?i)panic\"}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s *scenario.Scenario
		var err error
		cost := allocated(func() { s, err = scenario.Parse("dir/s.toml", data) })
		require.Less(t, cost, uint64(maxCost), "parsing %d bytes allocated %d", len(data), cost)
		if err != nil {
			var errs jobs.Errors
			require.ErrorAs(t, err, &errs)
			require.NotEmpty(t, errs)
			return
		}
		require.NotEmpty(t, s.Name)
		assert.True(t, (s.JobPath == "") != (s.JobTOML == ""), "exactly one of JobPath and JobTOML")
		if s.JobTOML != "" {
			_, err := jobs.Parse(s.File, []byte(s.JobTOML))
			assert.NoError(t, err)
		}
		for _, f := range s.Faults {
			assert.Contains(t, scenario.Kinds, f.Kind)
			n := 0
			for _, target := range []string{f.Node, f.Board, f.Role} {
				if target != "" {
					n++
				}
			}
			assert.Equal(t, 1, n, "one target: %+v", f)
			assert.GreaterOrEqual(t, f.After, time.Duration(0))
			kind, arg := f.Trigger()
			assert.Contains(t, []string{"boot", "deploy", "test", "console"}, kind)
			assert.Equal(t, kind == "test" || kind == "console", arg != "")
			assert.Positive(t, f.Line)
		}
		for _, te := range s.Expect.Tests {
			assert.True(t, slices.Contains([]string{"pass", "fail", "skip", "unknown", "absent"}, te.Result))
		}
		// Plans and checks never panic either.
		p, err := s.Plan(s.Seed, func(string) []string { return []string{"a-0", "a-1"} })
		require.NoError(t, err)
		_ = p.String()
		for _, d := range s.Expect.Check(scenario.Outcome{}) {
			_ = d.String()
		}
	})
}

// maxCost is what parsing any hostile scenario file may allocate in total.
const maxCost = 64 << 20

// allocated is the memory f allocates, in total.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
