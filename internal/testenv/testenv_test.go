package testenv_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/troupe-lab/troupe/internal/testenv"
)

// recorder is a testing.TB that records how Missing ended it.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
}
func (r *recorder) Skip(args ...any) { r.skip = fmt.Sprint(args...) }

func TestMissing(t *testing.T) {
	tests := []struct {
		value      string
		fail, skip bool
	}{
		{"1", true, false},
		{"", false, true},
		{"0", false, true},
	}
	for _, tc := range tests {
		t.Run("TROUPE_REQUIRE_TOOLS="+tc.value, func(t *testing.T) {
			t.Setenv(testenv.RequireTools, tc.value)
			r := &recorder{TB: t}
			testenv.Missing(r, "no chromium: apt-get install chromium")
			assert.Equal(t, tc.fail, r.fatal != "", "failed: %q", r.fatal)
			assert.Equal(t, tc.skip, r.skip != "", "skipped: %q", r.skip)
			for _, msg := range []string{r.fatal, r.skip} {
				if msg != "" {
					assert.Contains(t, msg, "apt-get install chromium")
				}
			}
		})
	}
}
