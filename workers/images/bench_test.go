package images_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/troupe-lab/troupe/workers/images"
)

// BenchmarkImageCrossing: a 32 MiB image named on the server (checksum),
// read in chunks and kept by a worker's cache (checksum again), per op;
// the remote's own cost is not in it.
func BenchmarkImageCrossing(b *testing.B) {
	const size = 32 << 20
	path := filepath.Join(b.TempDir(), "image.bin")
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	for b.Loop() {
		src := &images.Source{}
		ref, err := src.Ref(context.Background(), path)
		if err != nil {
			b.Fatal(err)
		}
		c, err := images.NewCache(b.TempDir(), 0, 0)
		if err != nil {
			b.Fatal(err)
		}
		r := src.Reader(path, ref)
		_, release, err := c.Get(context.Background(), ref, func(ctx context.Context, off int64) ([]byte, error) { return r.Chunk(ctx, off) })
		r.Close()
		if err != nil {
			b.Fatal(err)
		}
		release()
	}
}
