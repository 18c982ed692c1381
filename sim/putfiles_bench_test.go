package sim

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/troupe-lab/troupe/testshell"
)

// BenchmarkPutHelpers puts the test shell's helpers on a board, as every
// deploy does, into an emptied tmp each time.
func BenchmarkPutHelpers(b *testing.B) {
	files, err := testshell.Helpers()
	if err != nil {
		b.Fatal(err)
	}
	under := map[string][]byte{}
	for n, d := range files {
		under[filepath.Join(testshell.TmpSubdir, n)] = d
	}
	brd, err := New(Options{Name: "put", Dir: filepath.Join(b.TempDir(), "put")})
	if err != nil {
		b.Fatal(err)
	}
	defer brd.Close()
	for b.Loop() {
		b.StopTimer()
		if err := os.RemoveAll(filepath.Join(brd.Root(), "tmp")); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := brd.PutFiles(under, 0o755); err != nil {
			b.Fatal(err)
		}
	}
}
