package lab_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lab"
)

// TestHostileLabRejected: the attacks of issue 12 on a lab file are
// errors before it is decoded, at next to no cost.
func TestHostileLabRejected(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"nested arrays", "x = " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000), "lab.toml:1: arrays and inline tables are nested more than 32 deep"},
		{"nested inline tables", labFile + "x = " + strings.Repeat("{a=", 13000) + "1" + strings.Repeat("}", 13000), "arrays and inline tables are nested more than 32 deep"},
		{"long table header", "[" + strings.Repeat("a.", 100000) + "a]\n", "lab.toml:1: a key has more than 64 dotted parts"},
		{"over 1 MiB", labFile + "# " + strings.Repeat("x", 1<<20), "at most 1048576 are allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			cost := allocated(func() { _, err = lab.Parse("lab.toml", []byte(tc.src)) })
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Less(t, cost, uint64(64<<10), "allocated %d bytes", cost)
		})
	}
}
