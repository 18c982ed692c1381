package actors_test

import (
	"io/fs"
	"maps"
	"path"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/testshell"
)

// recordingPutter is a fake board that takes files without its console
// and records what it was given.
type recordingPutter struct {
	*fakeBackend
	mu   sync.Mutex
	puts []map[string][]byte
	mode []fs.FileMode
}

func (p *recordingPutter) PutFiles(files map[string][]byte, mode fs.FileMode) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.puts = append(p.puts, maps.Clone(files))
	p.mode = append(p.mode, mode)
	return nil
}

// TestHelpersPutOnFilePutters: a board that takes files gets the test
// shell's helpers, with their stamp, under $TMPDIR/troupe (mode 0755)
// when it has booted, before its test's files; every board gets them all.
func TestHelpersPutOnFilePutters(t *testing.T) {
	h := newHarness(t, "job.toml", fakeJob)
	var mu sync.Mutex
	putters := map[string]*recordingPutter{}
	h.cfg.Open = func(node string, b lab.Board) (actors.Backend, error) {
		be, err := h.openFake(node, b)
		if err != nil {
			return nil, err
		}
		p := &recordingPutter{fakeBackend: be.(*fakeBackend)}
		mu.Lock()
		putters[b.Name] = p
		mu.Unlock()
		return p, nil
	}
	h.start()
	res := h.wait(30 * time.Second)
	require.Equal(t, report.StatusComplete, res.Job.Status, res.Job.Error)

	helpers, err := testshell.Helpers()
	require.NoError(t, err)
	var want []string
	for n := range helpers {
		want = append(want, path.Join(testshell.TmpSubdir, n))
	}
	slices.Sort(want)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, putters, 3)
	for name, p := range putters {
		p.mu.Lock()
		require.Len(t, p.puts, 2, "%s: the helpers, then the test's files", name)
		assert.Equal(t, want, slices.Sorted(maps.Keys(p.puts[0])), name)
		assert.Equal(t, fs.FileMode(0o755), p.mode[0], name)
		for n, data := range helpers {
			assert.Equal(t, string(data), string(p.puts[0][path.Join(testshell.TmpSubdir, n)]), "%s: %s", name, n)
		}
		assert.Contains(t, p.puts[1], path.Join(testshell.TmpSubdir, "tests/x/run.sh"), name)
		p.mu.Unlock()
	}
}
