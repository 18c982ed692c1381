package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSummary(t *testing.T) {
	r := sample()
	r.Job.Status = StatusIncomplete
	r.Job.Error = "node client-0 timed out"
	r.Nodes[1].Status = StatusIncomplete
	r.Nodes[1].Error = "console:\n" + strings.Repeat("x", 100)

	var buf bytes.Buffer
	Summary(&buf, r)
	want := "" +
		"NODE      ROLE    BOARD  STATUS      PASSED  FAILED  ERROR\n" +
		"server-0  server  rpi4   complete    2       0       \n" +
		"client-0  client  bbb    incomplete  0       1       console: " + strings.Repeat("x", 48) + "...\n" +
		"job smoke: incomplete in 1.2s (2 passed, 1 failed)\n" +
		"error: node client-0 timed out\n"
	assert.Equal(t, want, buf.String())
}

func TestSummaryNoError(t *testing.T) {
	var buf bytes.Buffer
	Summary(&buf, &Results{Job: Job{Name: "empty", Status: StatusComplete, DurationS: 0.04}})
	assert.Equal(t, "NODE  ROLE  BOARD  STATUS  PASSED  FAILED  ERROR\n"+
		"job empty: complete in 0.0s (0 passed, 0 failed)\n", buf.String())
}

func TestSummaryNil(t *testing.T) {
	var buf bytes.Buffer
	Summary(&buf, nil)
	assert.Empty(t, buf.String())
}

func TestTruncate(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"short", "short"},
		{strings.Repeat("é", 60), strings.Repeat("é", 60)},
		{strings.Repeat("é", 61), strings.Repeat("é", 57) + "..."},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, truncate(tt.in, maxErrorLen))
	}
}
