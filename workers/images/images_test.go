package images_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/troupe-lab/troupe/lava"
	"github.com/troupe-lab/troupe/workers/images"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve is the server's side of a transfer, as a Fetch for a Cache; it
// counts the chunks read.
func serve(t *testing.T, src *images.Source, path string, ref images.Ref, chunks *atomic.Int64) images.Fetch {
	r := src.Reader(path, ref)
	t.Cleanup(r.Close)
	var mu sync.Mutex
	return func(ctx context.Context, off int64) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if chunks != nil {
			chunks.Add(1)
		}
		return r.Chunk(ctx, off)
	}
}

func TestDefaultBoundIsTheServers(t *testing.T) {
	assert.EqualValues(t, lava.DefaultMaxDownload, images.DefaultMaxBytes)
}

// TestFileCrosses: a file of several chunks arrives whole, under the
// cache's directory by checksum, with its name.
func TestFileCrosses(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), images.ChunkSize/16*2+100)
	path := filepath.Join(t.TempDir(), "rootfs.img")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	src := &images.Source{}
	ref, err := src.Ref(context.Background(), path)
	require.NoError(t, err)
	sum := sha256.Sum256(data)
	assert.Equal(t, images.Ref{Sum: hex.EncodeToString(sum[:]), Size: int64(len(data)), Name: "rootfs.img"}, ref)

	dir := t.TempDir()
	c, err := images.NewCache(dir, 0, 0)
	require.NoError(t, err)
	var chunks atomic.Int64
	got, release, err := c.Get(context.Background(), ref, serve(t, src, path, ref, &chunks))
	require.NoError(t, err)
	defer release()
	assert.Equal(t, filepath.Join(dir, ref.Sum, "rootfs.img"), got)
	body, err := os.ReadFile(got)
	require.NoError(t, err)
	assert.Equal(t, data, body)
	assert.EqualValues(t, 3, chunks.Load())
}

// TestDirectoryCrossesAsTar: a directory image crosses as a tar of its
// files, directories and links.
func TestDirectoryCrossesAsTar(t *testing.T) {
	root := filepath.Join(t.TempDir(), "hello-rootfs")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc", "motd"), []byte("hi\n"), 0o644))
	require.NoError(t, os.Symlink("etc/motd", filepath.Join(root, "motd")))
	src := &images.Source{}
	ref, err := src.Ref(context.Background(), root)
	require.NoError(t, err)
	assert.True(t, ref.Dir)
	assert.Equal(t, "hello-rootfs.tar", ref.Name)
	c, err := images.NewCache(t.TempDir(), 0, 0)
	require.NoError(t, err)
	got, release, err := c.Get(context.Background(), ref, serve(t, src, root, ref, nil))
	require.NoError(t, err)
	defer release()
	f, err := os.Open(got)
	require.NoError(t, err)
	defer f.Close()
	tr := tar.NewReader(f)
	entries := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		body, _ := io.ReadAll(tr)
		entries[h.Name] = string(body) + h.Linkname
	}
	assert.Equal(t, map[string]string{"etc/": "", "etc/motd": "hi\n", "motd": "etc/motd"}, entries)
}

// TestFetchedOnce: many nodes asking for the same image at once fetch it
// once; a later ask reads the cache, also after the worker restarts.
func TestFetchedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "image.tar")
	require.NoError(t, os.WriteFile(path, bytes.Repeat([]byte{7}, images.ChunkSize+1), 0o644))
	src := &images.Source{}
	ref, err := src.Ref(context.Background(), path)
	require.NoError(t, err)
	dir := t.TempDir()
	c, err := images.NewCache(dir, 0, 0)
	require.NoError(t, err)
	var chunks atomic.Int64
	fetch := serve(t, src, path, ref, &chunks)
	var wg sync.WaitGroup
	paths := make([]string, 20)
	for i := range paths {
		wg.Go(func() {
			p, release, err := c.Get(context.Background(), ref, fetch)
			assert.NoError(t, err)
			release()
			paths[i] = p
		})
	}
	wg.Wait()
	assert.EqualValues(t, 2, chunks.Load(), "the image's two chunks, once")
	for _, p := range paths {
		assert.Equal(t, paths[0], p)
	}
	again, err := images.NewCache(dir, 0, 0)
	require.NoError(t, err)
	_, release, err := again.Get(context.Background(), ref, func(context.Context, int64) ([]byte, error) {
		return nil, errors.New("fetched again")
	})
	require.NoError(t, err)
	release()
}

// TestCorruptChunkDetected: a chunk changed on the way fails the image
// with ErrCorrupt and keeps nothing; the next fetch starts afresh.
func TestCorruptChunkDetected(t *testing.T) {
	path := filepath.Join(t.TempDir(), "image.bin")
	require.NoError(t, os.WriteFile(path, bytes.Repeat([]byte("abc"), images.ChunkSize), 0o644))
	src := &images.Source{}
	ref, err := src.Ref(context.Background(), path)
	require.NoError(t, err)
	dir := t.TempDir()
	c, err := images.NewCache(dir, 0, 0)
	require.NoError(t, err)
	good := serve(t, src, path, ref, nil)
	bad := func(ctx context.Context, off int64) ([]byte, error) {
		b, err := good(ctx, off)
		if off > 0 && len(b) > 0 {
			b = bytes.Clone(b)
			b[len(b)/2] ^= 1
		}
		return b, err
	}
	_, _, err = c.Get(context.Background(), ref, bad)
	require.ErrorIs(t, err, images.ErrCorrupt)
	assert.Contains(t, err.Error(), "checksum")
	_, statErr := os.Stat(filepath.Join(dir, ref.Sum))
	assert.True(t, os.IsNotExist(statErr), "a corrupt image is not kept")
	parts, err := os.ReadDir(filepath.Join(dir, ".part"))
	require.NoError(t, err)
	assert.Empty(t, parts)

	long := func(ctx context.Context, off int64) ([]byte, error) {
		b, err := good(ctx, off)
		return append(b, 'x'), err
	}
	_, _, err = c.Get(context.Background(), ref, long)
	require.ErrorIs(t, err, images.ErrCorrupt)

	p, release, err := c.Get(context.Background(), ref, good)
	require.NoError(t, err)
	release()
	body, err := os.ReadFile(p)
	require.NoError(t, err)
	want, _ := os.ReadFile(path)
	assert.Equal(t, want, body)
}

// TestOversizeRefused: the server refuses to send an image over its
// bound (a file by its size, a directory as its tar grows), and a worker
// refuses one over its own before fetching anything.
func TestOversizeRefused(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "big.img")
	require.NoError(t, os.WriteFile(file, make([]byte, 5000), 0o644))
	dir := filepath.Join(tmp, "bigdir")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a"), make([]byte, 5000), 0o644))
	src := &images.Source{MaxBytes: 4096}
	for _, p := range []string{file, dir} {
		_, err := src.Ref(context.Background(), p)
		require.ErrorIs(t, err, images.ErrTooBig, p)
		assert.Contains(t, err.Error(), "4096 bytes")
	}
	c, err := images.NewCache(t.TempDir(), 4096, 0)
	require.NoError(t, err)
	ref := images.Ref{Sum: hex.EncodeToString(make([]byte, 32)), Size: 5000, Name: "big.img"}
	_, _, err = c.Get(context.Background(), ref, func(context.Context, int64) ([]byte, error) {
		t.Error("an oversize image was fetched")
		return nil, nil
	})
	require.ErrorIs(t, err, images.ErrTooBig)
	assert.Contains(t, err.Error(), "at most 4096 bytes")
}

// TestBadRefsRefused: names that would leave the cache's directory and
// bad checksums are refused.
func TestBadRefsRefused(t *testing.T) {
	c, err := images.NewCache(t.TempDir(), 0, 0)
	require.NoError(t, err)
	sum := hex.EncodeToString(make([]byte, 32))
	for _, ref := range []images.Ref{
		{Sum: sum, Name: "../x"}, {Sum: sum, Name: "a/b"}, {Sum: sum, Name: ".."}, {Sum: sum, Name: ""},
		{Sum: sum, Name: ".part"}, {Sum: "../../etc", Name: "x"}, {Sum: sum, Name: "x", Size: -1},
	} {
		_, _, err := c.Get(context.Background(), ref, func(context.Context, int64) ([]byte, error) {
			t.Errorf("%+v fetched", ref)
			return nil, nil
		})
		assert.Error(t, err, "%+v", ref)
	}
}

// TestCacheBounded: a new image evicts the least recently used unused
// one; images in use are kept, and one that does not fit then is refused.
func TestCacheBounded(t *testing.T) {
	tmp := t.TempDir()
	src := &images.Source{}
	refs := map[string]images.Ref{}
	fetches := map[string]images.Fetch{}
	for _, n := range []string{"a", "b", "c"} {
		p := filepath.Join(tmp, n)
		require.NoError(t, os.WriteFile(p, bytes.Repeat([]byte(n), 1000), 0o644))
		ref, err := src.Ref(context.Background(), p)
		require.NoError(t, err)
		refs[n], fetches[n] = ref, serve(t, src, p, ref, nil)
	}
	dir := t.TempDir()
	c, err := images.NewCache(dir, 1000, 2000)
	require.NoError(t, err)
	_, relA, err := c.Get(context.Background(), refs["a"], fetches["a"])
	require.NoError(t, err)
	_, relB, err := c.Get(context.Background(), refs["b"], fetches["b"])
	require.NoError(t, err)
	_, _, err = c.Get(context.Background(), refs["c"], fetches["c"])
	require.Error(t, err, "a and b are in use")
	assert.Contains(t, err.Error(), "image cache full")
	relA()
	relB()
	_, relC, err := c.Get(context.Background(), refs["c"], fetches["c"])
	require.NoError(t, err)
	relC()
	_, err = os.Stat(filepath.Join(dir, refs["a"].Sum))
	assert.True(t, os.IsNotExist(err), "a, the least recently used, evicted")
	_, err = os.Stat(filepath.Join(dir, refs["b"].Sum))
	assert.NoError(t, err)
}

// TestSourceSeesChanges: an image changed on the server gets its new
// checksum (the remembered one is for the old content).
func TestSourceSeesChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	require.NoError(t, os.WriteFile(path, []byte("one"), 0o644))
	src := &images.Source{}
	r1, err := src.Ref(context.Background(), path)
	require.NoError(t, err)
	r2, err := src.Ref(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, r1, r2)
	require.NoError(t, os.WriteFile(path, []byte("two!"), 0o644))
	r3, err := src.Ref(context.Background(), path)
	require.NoError(t, err)
	assert.NotEqual(t, r1.Sum, r3.Sum)
}

// TestFetchesBounded: a worker fetches at most MaxFetches images at once
// (each has one chunk in flight: the remote's messages stay small).
func TestFetchesBounded(t *testing.T) {
	c, err := images.NewCache(t.TempDir(), 0, 0)
	require.NoError(t, err)
	var now, most atomic.Int64
	release := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 3 * images.MaxFetches {
		data := []byte(fmt.Sprint("image ", i))
		sum := sha256.Sum256(data)
		ref := images.Ref{Sum: hex.EncodeToString(sum[:]), Size: int64(len(data)), Name: "img"}
		wg.Go(func() {
			_, rel, err := c.Get(context.Background(), ref, func(context.Context, int64) ([]byte, error) {
				n := now.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				<-release
				now.Add(-1)
				return data, nil
			})
			if assert.NoError(t, err) {
				rel()
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for now.Load() < images.MaxFetches && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	assert.EqualValues(t, images.MaxFetches, most.Load())
}

// TestSourceCallerGivesUp: callers asking for the same image share its
// checksum; the one computing it giving up leaves the others their
// answer, and a refusal is remembered, not computed again.
func TestSourceCallerGivesUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	require.NoError(t, os.WriteFile(path, bytes.Repeat([]byte("x"), 32<<20), 0o644))
	src := &images.Source{}
	first, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		close(started)
		_, _ = src.Ref(first, path) // gives up while it computes
	})
	<-started
	wg.Go(func() {
		ref, err := src.Ref(context.Background(), path)
		assert.NoError(t, err, "a caller that gave up leaves no error to the others")
		assert.EqualValues(t, 32<<20, ref.Size)
	})
	cancel()
	wg.Wait()

	dir := filepath.Join(t.TempDir(), "big")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a"), make([]byte, 8192), 0o644))
	small := &images.Source{MaxBytes: 4096}
	for range 8 {
		wg.Go(func() {
			_, err := small.Ref(context.Background(), dir)
			assert.ErrorIs(t, err, images.ErrTooBig)
		})
	}
	wg.Wait()
}
