package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/report"
)

// imageJob deploys the server's image "rootfs" on a worker's board.
const imageJob = `name = "server-image"
timeout = "3m"
[roles.a]
device_type = "sim"
tags = ["w2"]
[[action]]
type = "deploy"
image = "rootfs"
[[action]]
type = "boot"
timeout = "90s"
[[action]]
type = "test"
name = "look"
timeout = "1m"
run = '''
troupe-test-case greeting --shell grep -qx 'from the server images' etc/greeting
'''
`

// TestWorkersDeployServerImage: a submitted job deploys an image of the
// server's images root on a worker's board: the worker fetches it from
// the server (in chunks, over the remote with mutual TLS) and keeps it
// under its --data directory by checksum.
func TestWorkersDeployServerImage(t *testing.T) {
	c := startCluster(t, 1)
	root := filepath.Join(c.data, "images", "rootfs")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc", "greeting"), []byte("from the server images\n"), 0o644))
	// Several chunks over the remote.
	require.NoError(t, os.WriteFile(filepath.Join(root, "padding"), bytes.Repeat([]byte("troupe\n"), 300_000), 0o644))
	id := submitJob(t, c.srv.url, imageJob)
	j := waitEnded(t, c.srv.url, id, 3*time.Minute)
	require.Equal(t, report.StatusComplete, j.Status, "%+v\n%s", j, c.srv.out.String())
	require.Len(t, j.Tests, 2)
	for _, tc := range j.Tests {
		assert.Equal(t, report.Pass, tc.Result, "%s %s/%s", tc.Node, tc.Suite, tc.Name)
	}
	kept, err := filepath.Glob(filepath.Join(c.dirs["w2"], "images", "*", "rootfs.tar"))
	require.NoError(t, err)
	assert.Len(t, kept, 1, "the image kept by checksum on worker w2")
}
