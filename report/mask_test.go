package report

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestResultsMask: every text a test or its node wrote goes through the
// mask; results, counts and the rest are kept.
func TestResultsMask(t *testing.T) {
	const s = "S3CRET"
	r := Results{
		Job:   Job{Name: "j", Status: StatusIncomplete, Error: "node failed: " + s, Attempts: []Attempt{{Boards: []string{"b"}, Error: "lost " + s}}},
		Nodes: []Node{{Name: "n", Role: "r", Board: "b", Status: StatusIncomplete, Error: "test printed " + s}},
		Tests: []Test{{Node: "n", Role: "r", Suite: "suite-" + s, Name: "case-" + s, Result: Pass, Measurement: ptr(1), Units: s, Set: "set-" + s,
			Reference: "https://x/?k=" + s, Attachments: []Attachment{NewAttachment("n", "suite", "case", "f-"+s, "", []byte("d"))}}},
	}
	r.Mask(func(v string) string { return strings.ReplaceAll(v, s, "[secret]") })
	b, err := json.Marshal(r)
	require.NoError(t, err)
	assert.NotContains(t, string(b), s)
	assert.Equal(t, "case-[secret]", r.Tests[0].Name)
	assert.Equal(t, "[secret]", r.Tests[0].Units)
	assert.Equal(t, Pass, r.Tests[0].Result)
	assert.Equal(t, "j", r.Job.Name)
}
