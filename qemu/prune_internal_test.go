package qemu

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/internal/testenv"
)

// cacheEntry makes dir under cache with a version file (or, version "",
// none) dated at.
func cacheEntry(t *testing.T, cache, dir, version string, at time.Time) string {
	t.Helper()
	p := filepath.Join(cache, dir)
	require.NoError(t, os.MkdirAll(p, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(p, "vmlinuz"), []byte("k"), 0o644))
	if version != "" {
		require.NoError(t, os.WriteFile(filepath.Join(p, "version"), []byte(version), 0o644))
		require.NoError(t, os.Chtimes(filepath.Join(p, "version"), at, at))
	}
	require.NoError(t, os.Chtimes(p, at, at))
	return p
}

func TestPruneImages(t *testing.T) {
	cache := t.TempDir()
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	old := cacheEntry(t, cache, "6.1.0-1-amd64-aaaaaaaaaaaa", "1", now.Add(-15*24*time.Hour))
	recent := cacheEntry(t, cache, "6.1.0-1-amd64-bbbbbbbbbbbb", "1", now.Add(-13*24*time.Hour))
	other := cacheEntry(t, cache, "someone-elses", "", now.Add(-100*24*time.Hour))
	staleBuild := cacheEntry(t, cache, ".build-123", "", now.Add(-15*24*time.Hour))
	build := cacheEntry(t, cache, ".build-456", "", now.Add(-time.Minute))
	file := filepath.Join(cache, "notes.txt")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	require.NoError(t, os.Chtimes(file, now.Add(-100*24*time.Hour), now.Add(-100*24*time.Hour)))

	pruneImages(cache, now, 14*24*time.Hour)

	assert.NoDirExists(t, old, "unused for longer than the limit")
	assert.NoDirExists(t, staleBuild, "a build left behind")
	assert.DirExists(t, recent)
	assert.DirExists(t, other, "not default images: not the cache's to remove")
	assert.DirExists(t, build, "a build under way")
	assert.FileExists(t, file)
	pruneImages(filepath.Join(cache, "missing"), now, time.Hour) // no cache yet: nothing to do
}

// TestDefaultImagesUseKeepsThem: using default images brings their
// version file's time forward, so that only images nobody uses are
// pruned; a build prunes old ones.
func TestDefaultImagesUseKeepsThem(t *testing.T) {
	if err := Missing(); err != nil {
		testenv.Missing(t, err.Error())
	}
	cache := t.TempDir()
	ctx := context.Background()
	im, err := DefaultImages(ctx, "x86_64", cache, nil)
	require.NoError(t, err)
	stamp := filepath.Join(filepath.Dir(im.Kernel), "version")
	long := time.Now().Add(-20 * 24 * time.Hour)
	require.NoError(t, os.Chtimes(stamp, long, long))
	_, err = DefaultImages(ctx, "x86_64", cache, nil)
	require.NoError(t, err)
	fi, err := os.Stat(stamp)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), fi.ModTime(), time.Minute, "used just now")

	stale := cacheEntry(t, cache, "6.1.0-0-amd64-cccccccccccc", "1", long)
	_, err = DefaultImages(ctx, "x86_64", cache, map[string][]byte{"troupe/x": []byte("x")})
	require.NoError(t, err)
	assert.NoDirExists(t, stale, "a build removes images unused for long")
	assert.FileExists(t, stamp, "images in use stay")
}
