package scenario_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/scenario"
)

// TestHostileScenarioRejected: the attacks of issue 12 on a scenario file
// (and its inline job) are errors before it is decoded, at next to no cost.
func TestHostileScenarioRejected(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"nested arrays in the inline job", inline + "x = " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000), "arrays and inline tables are nested more than 32 deep"},
		{"nested inline tables", "name = 'x'\nseed = 1\njob = " + strings.Repeat("{a=", 13000) + "1" + strings.Repeat("}", 13000), "s.toml:3: arrays and inline tables are nested more than 32 deep"},
		{"long table header", "[job." + strings.Repeat("a.", 100000) + "a]\n", "s.toml:1: a key has more than 64 dotted parts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			cost := allocated(func() { _, err = scenario.Parse("s.toml", []byte(tc.src)) })
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Less(t, cost, uint64(64<<10), "allocated %d bytes", cost)
		})
	}
}
