package actors_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/workers/images"
)

const remoteDeploy = `name = "deploy"
timeout = "2m"
[roles.a]
device_type = "sim"
count = 3
[[action]]
type = "deploy"
image = "server-images/rootfs"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "look"
timeout = "1m"
run = '''
troupe-test-case greeting --shell grep -qx 'from the server' etc/greeting
'''
`

// serverImage makes the job's image, a directory, in the "server's"
// images directory (beside the job file).
func serverImage(t *testing.T, w *workerLab, size int) {
	t.Helper()
	root := filepath.Join(w.dir, "server-images", "rootfs")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc", "greeting"), []byte("from the server\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc", "padding"), make([]byte, size), 0o644))
}

// TestRemoteDeployImageFromServer: a deploy image that exists only on the
// server reaches the worker's boards: the boards read the worker's copy
// (never the server's path), fetched once for the job's three nodes on
// that worker and kept under the worker's data directory by checksum.
func TestRemoteDeployImageFromServer(t *testing.T) {
	w := newWorkerLab(t, worker{name: "w1", boards: []string{"w1-a", "w1-b", "w1-c"}})
	serverImage(t, w, 3*images.ChunkSize)
	r, log := w.run(remoteDeploy, nil)
	require.Equal(t, report.StatusComplete, r.Job.Status, "%+v\n%s", r, log)
	require.Len(t, r.Tests, 6)
	for _, tc := range r.Tests {
		assert.Equal(t, report.Pass, tc.Result, "%+v", tc)
	}
	kept, err := os.ReadDir(filepath.Join(w.workerData("w1"), "images"))
	require.NoError(t, err)
	var sums []string
	for _, e := range kept {
		if e.Name() != ".part" {
			sums = append(sums, e.Name())
		}
	}
	require.Len(t, sums, 1, "one copy of the image for three nodes")
	files, err := os.ReadDir(filepath.Join(w.workerData("w1"), "images", sums[0]))
	require.NoError(t, err)
	require.Len(t, files, 1)
	assert.Equal(t, "rootfs.tar", files[0].Name())
}

// TestRemoteDeployImageTooBig: an image over the server's bound is
// refused before anything crosses, naming the bound.
func TestRemoteDeployImageTooBig(t *testing.T) {
	w := newWorkerLabWith(t, server{images: &images.Source{MaxBytes: 64 << 10}}, worker{name: "w1", boards: []string{"w1-a", "w1-b", "w1-c"}})
	serverImage(t, w, 100<<10)
	r, log := w.run(remoteDeploy, nil)
	require.NotEqual(t, report.StatusComplete, r.Job.Status, "%+v\n%s", r, log)
	errs := fmt.Sprintf("%+v", r.Nodes)
	assert.Contains(t, errs, "deploy image: image "+filepath.Join(w.dir, "server-images", "rootfs")+": image too big: more than 65536 bytes; images are limited to that", log)
	kept, err := os.ReadDir(filepath.Join(w.workerData("w1"), "images"))
	require.NoError(t, err)
	assert.Len(t, kept, 1, "only .part: nothing crossed")
}
