package sim

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/troupe-lab/troupe/testshell"
)

// BenchmarkPutHelpers puts the test shell's helpers on a board, as every
// deploy does, into an emptied tmp each time.
func BenchmarkPutHelpers(b *testing.B) {
	under, err := testshell.HelpersUnderTmp()
	if err != nil {
		b.Fatal(err)
	}
	work := b.TempDir()
	spread(b, work)
	brd, err := New(Options{Name: "put", Dir: filepath.Join(work, "put")})
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

// BenchmarkBoardFiles is the file work of one board's job without its
// shell: open the board (an empty root), put the helpers and a test's
// files, close it (the root removed). The boards are in one work
// directory; the test's script and group file are put on every board
// alike, its environment differs.
func BenchmarkBoardFiles(b *testing.B) {
	files, err := testshell.Helpers()
	if err != nil {
		b.Fatal(err)
	}
	helpers := map[string][]byte{}
	for n, d := range files {
		helpers[filepath.Join(testshell.TmpSubdir, n)] = d
	}
	group := make([]byte, 30<<10)
	for i := range group {
		group[i] = 'a' + byte(i%26)
	}
	work := b.TempDir()
	spread(b, work)
	i := 0
	for b.Loop() {
		i++
		brd, err := New(Options{Name: "files", Dir: filepath.Join(work, fmt.Sprint("b", i%100))})
		if err != nil {
			b.Fatal(err)
		}
		if err := brd.PutFiles(helpers, 0o755); err != nil {
			b.Fatal(err)
		}
		test := map[string][]byte{
			"troupe/tests/t/run.sh": []byte("troupe-sync s1\n"),
			"troupe/tests/t/env":    fmt.Appendf(nil, "TROUPE_NODE=n%d; export TROUPE_NODE\n", i),
			"troupe/group":          group,
		}
		if err := brd.PutFiles(test, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := brd.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// spread places the boards of a benchmark as runner.StartService does.
func spread(b *testing.B, work string) {
	if err := SpreadBoards(work); err != nil {
		b.Logf("boards not spread: %v", err)
	}
}
