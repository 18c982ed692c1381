package logbook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMaskSecrets: a job's secrets are written as [secret] in the merged
// log, its subscribers' entries and the raw console logs, also when a
// secret comes split over several writes or ends the console.
func TestMaskSecrets(t *testing.T) {
	b, dir := newBook(t, nil)
	b.Mask([]string{"hunter2", "s3cr3t-token-value", ""})
	_, ch, cancel := b.Subscribe(1, 16)
	defer cancel()

	e := b.Line("node-0", "password is hunter2, token s3cr3t-token-value.")
	assert.Equal(t, "password is [secret], token [secret].", e.Text)
	assert.Equal(t, e.Text, (<-ch).Text)

	w := b.Raw("node-0")
	for _, piece := range []string{"login hun", "ter2 ok\r\n", "s3cr3t-", "token-val", "ue\r\nlast: hunt", "er2"} {
		n, err := w.Write([]byte(piece))
		require.NoError(t, err)
		assert.Equal(t, len(piece), n)
	}
	require.NoError(t, b.Close())

	raw, err := os.ReadFile(filepath.Join(dir, "logs", "node-0.log"))
	require.NoError(t, err)
	assert.Equal(t, "login [secret] ok\r\n[secret]\r\nlast: [secret]", string(raw))
	group, err := os.ReadFile(filepath.Join(dir, "logs", GroupFile))
	require.NoError(t, err)
	for _, s := range []string{"hunter2", "s3cr3t", "token-val"} {
		assert.NotContains(t, string(raw)+string(group), s)
	}
	assert.True(t, strings.Contains(string(group), "[secret]"))
}

// TestMaskNothing: without secrets, raw writes go through at once.
func TestMaskNothing(t *testing.T) {
	b, dir := newBook(t, nil)
	b.Mask(nil)
	_, err := b.Raw("n").Write([]byte("abc"))
	require.NoError(t, err)
	raw, err := os.ReadFile(filepath.Join(dir, "logs", "n.log"))
	require.NoError(t, err)
	assert.Equal(t, "abc", string(raw))
}

// TestMaskLongestFirst: a secret that begins another one does not leave
// the other's tail in the log.
func TestMaskLongestFirst(t *testing.T) {
	b, _ := newBook(t, nil)
	b.Mask([]string{"abc", "abcdef"})
	assert.Equal(t, "x [secret] y [secret]", b.Line("n", "x abcdef y abc").Text)
	require.NoError(t, b.Close())
}

// TestMasker: a whole text, every occurrence, the longest secret first,
// empty ones ignored.
func TestMasker(t *testing.T) {
	m := Masker([]string{"", "abc", "abcdef"})
	assert.Equal(t, "A = \"[secret]\"\nB = \"[secret]\"\nrun [secret]-[secret]", m.Replace("A = \"abc\"\nB = \"abcdef\"\nrun abc-abcdef"))
	assert.Equal(t, "plain", Masker(nil).Replace("plain"))
}
