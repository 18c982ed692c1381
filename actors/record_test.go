package actors

import (
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/testshell"
)

// TestRecordAttachmentsBounded: the attachments kept of one node are
// bounded over all its tests; the ones beyond are dropped (and logged),
// the results stay.
func TestRecordAttachmentsBounded(t *testing.T) {
	a := &nodeActor{cfg: Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, node: jobs.Node{Name: "n-0", Role: "n"}}
	mib := make([]byte, testshell.MaxAttachment)
	per := testshell.MaxRunAttachments / testshell.MaxAttachment
	runs := MaxNodeAttachments/testshell.MaxRunAttachments + 1
	for r := 0; r < runs; r++ {
		o := testshell.Outcome{Cases: []testshell.Case{{Name: "c", Result: "pass"}}}
		for i := 0; i < per; i++ {
			o.Attachments = append(o.Attachments, testshell.Attachment{Case: "c", Name: "f", Data: mib})
		}
		a.record(jobs.Action{Name: "t"}, o)
	}
	kept := 0
	for _, tc := range a.tests {
		for _, at := range tc.Attachments {
			kept += at.Size
		}
	}
	assert.Equal(t, MaxNodeAttachments, kept)
	assert.Len(t, a.tests, 2*runs, "every result is kept")
}
