package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/store"
)

// TestServeDamagedStore: `troupe serve` on a damaged store (or a new one
// beside old job folders) stops with a clear error and exit 3, never a
// SIGBUS or a panic trace, and leaves the files as they were.
func TestServeDamagedStore(t *testing.T) {
	t.Parallel()
	sound := filepath.Join(t.TempDir(), "troupe.db")
	st, err := store.Open(sound)
	require.NoError(t, err)
	for i := range 200 {
		_, err := st.Add(&store.Job{Name: fmt.Sprintf("job-%d", i), Status: "complete", Source: strings.Repeat("x", 3000)}, nil)
		require.NoError(t, err)
	}
	require.NoError(t, st.Close())
	good, err := os.ReadFile(sound)
	require.NoError(t, err)
	page := os.Getpagesize()

	for _, c := range []struct {
		name  string
		store func() []byte // nil: no store file
		want  string
	}{
		{"empty", func() []byte { return []byte{} }, "the file is empty"},
		{"truncated", func() []byte { return good[:len(good)/2/page*page] }, "truncated"},
		{"bad pages", func() []byte {
			b := append([]byte{}, good...)
			for i := 100 * page; i < 120*page; i++ {
				b[i] = byte(i * 7)
			}
			return b
		}, "damaged page"},
		{"new store beside job folders", nil, "the store of those jobs was lost or replaced"},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := t.TempDir()
			require.NoError(t, os.MkdirAll(filepath.Join(data, "jobs", "1", "logs"), 0o755))
			var before []byte
			if c.store != nil {
				before = c.store()
				require.NoError(t, os.WriteFile(filepath.Join(data, "troupe.db"), before, 0o600))
			}
			r := troupe(t, "serve", "--data", data, "--addr", "127.0.0.1:0")
			assert.Equal(t, exitInvalid, r.code, r.stderr)
			assert.Contains(t, r.stderr, "store damaged")
			assert.Contains(t, r.stderr, c.want)
			for _, crash := range []string{"goroutine ", "[signal", "SIGBUS", "fatal error", "runtime error"} {
				assert.NotContains(t, r.stderr, crash)
			}
			assert.NotContains(t, r.stdout, "troupe serving")
			if c.store != nil {
				after, err := os.ReadFile(filepath.Join(data, "troupe.db"))
				require.NoError(t, err)
				assert.Equal(t, before, after, "the damaged store is left as it was")
			}
		})
	}
}
