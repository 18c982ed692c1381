package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSetsReferencesAttachments: a test's set, reference and attachments
// are kept in results.json (attachment bytes included), junit.xml
// (properties, [[ATTACHMENT|path]]) and, for the bytes, a file under the
// results directory.
func TestSetsReferencesAttachments(t *testing.T) {
	data := []byte("dmesg\x00\xff")
	a := NewAttachment("client-0", "smoke", "boot", "dmesg.log", "text/plain", data)
	assert.Equal(t, "attachments/client-0/smoke/boot/dmesg.log", a.Path)
	assert.Equal(t, len(data), a.Size)
	assert.Len(t, a.SHA256, 64)
	r := &Results{Job: Job{Name: "j", Status: StatusComplete}, Tests: []Test{
		{Node: "client-0", Suite: "smoke", Name: "boot", Result: Pass, Set: "net-io", Reference: "https://ci.example.org/7", Attachments: []Attachment{a}},
	}}
	dir := t.TempDir()
	require.NoError(t, Write(dir, r))

	back, err := Read(dir)
	require.NoError(t, err)
	assert.Equal(t, r.Tests, back.Tests)
	raw, err := os.ReadFile(filepath.Join(dir, JSONFile))
	require.NoError(t, err)
	var generic struct {
		Tests []map[string]any `json:"tests"`
	}
	require.NoError(t, json.Unmarshal(raw, &generic))
	assert.Equal(t, "net-io", generic.Tests[0]["set"])
	assert.Equal(t, "https://ci.example.org/7", generic.Tests[0]["reference"])

	saved, err := os.ReadFile(filepath.Join(dir, "attachments", "client-0", "smoke", "boot", "dmesg.log"))
	require.NoError(t, err)
	assert.Equal(t, data, saved)

	doc, _ := parseJUnit(t, r)
	c := doc.Suites[0].Cases[0]
	require.NotNil(t, c.Properties)
	assert.Contains(t, c.Properties.Props, junitProp{Name: "set", Value: "net-io"})
	assert.Contains(t, c.Properties.Props, junitProp{Name: "reference", Value: "https://ci.example.org/7"})
	assert.Equal(t, "[[ATTACHMENT|attachments/client-0/smoke/boot/dmesg.log]]\n", c.SystemOut)
}

// TestAttachmentPathsSafe: whatever the names, an attachment is saved
// under the results directory's attachments; a path read back from a file
// that leaves it is refused.
func TestAttachmentPathsSafe(t *testing.T) {
	for _, n := range [][4]string{
		{"..", "..", "..", ".."},
		{"a/b", "/etc", "c\\d", "."},
		{"", "", "", ""},
		{"x\x00y", "é", "a b", "..."},
	} {
		a := NewAttachment(n[0], n[1], n[2], n[3], "", []byte("x"))
		p := filepath.FromSlash(a.Path)
		assert.True(t, filepath.IsLocal(p), a.Path)
		rel, err := filepath.Rel(AttachmentsDir, p)
		require.NoError(t, err)
		assert.True(t, filepath.IsLocal(rel), a.Path)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		assert.Len(t, parts, 4, "node, suite, case, file: %s", a.Path)
		for _, part := range parts {
			assert.NotContains(t, []string{"", ".", ".."}, part, a.Path)
		}
	}
	dir := t.TempDir()
	for _, p := range []string{"../escape", "attachments/../../escape", "/tmp/escape", "elsewhere/x"} {
		r := &Results{Tests: []Test{{Name: "c", Attachments: []Attachment{{Name: "x", Path: p, Data: []byte("x")}}}}}
		assert.ErrorContains(t, Write(filepath.Join(dir, "out"), r), "is not under attachments", p)
	}
	_, err := os.Stat(filepath.Join(dir, "escape"))
	assert.True(t, os.IsNotExist(err))
}
