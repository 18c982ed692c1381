package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/server"
	"github.com/troupe-lab/troupe/workers"
)

// The end-to-end tests of jobs on workers' boards: the node actors on the
// server, each board actor on its worker, over protoactor remote.

// taggedLab writes a worker's lab file of sim boards, all with tag.
func taggedLab(t *testing.T, tag string, boards ...string) string {
	t.Helper()
	var b strings.Builder
	for _, n := range boards {
		fmt.Fprintf(&b, "[[board]]\nname = %q\ndevice_type = \"sim\"\ntags = [%q]\n\n", n, tag)
	}
	path := filepath.Join(t.TempDir(), "lab.toml")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	return path
}

// labCA makes a lab CA with the certificates of the named workers.
func labCA(t *testing.T, names ...string) string {
	t.Helper()
	ca := t.TempDir()
	require.Equal(t, 0, troupe(t, "ca", "init", ca).code)
	for _, w := range names {
		r := troupe(t, "ca", "issue", ca, "--name", w)
		require.Equal(t, 0, r.code, r.stderr)
	}
	return ca
}

// workerCluster is a server with workers w1, w2, w3 on loopback, with
// mutual TLS; worker i has boards wI-0 .. wI-(n-1) tagged "wI".
type workerCluster struct {
	ca, addr, data string
	srv            *serveProc
	procs          map[string]*workerProc
	labs           map[string]string
	dirs           map[string]string
}

func startCluster(t *testing.T, boardsEach int) *workerCluster {
	t.Helper()
	c := &workerCluster{ca: labCA(t, "w1", "w2", "w3"), addr: freeAddr(t), data: t.TempDir(),
		procs: map[string]*workerProc{}, labs: map[string]string{}, dirs: map[string]string{}}
	c.srv = startServe(t, "--data", c.data, "--workers", c.addr, "--tls", c.ca)
	for _, w := range []string{"w1", "w2", "w3"} {
		var names []string
		for i := range boardsEach {
			names = append(names, fmt.Sprintf("%s-%d", w, i))
		}
		c.labs[w], c.dirs[w] = taggedLab(t, w, names...), t.TempDir()
		c.start(t, w)
	}
	c.waitJoined(t, c.srv)
	return c
}

func (c *workerCluster) start(t *testing.T, w string) {
	t.Helper()
	c.procs[w] = startWorkerProc(t, "--server", c.addr, "--lab", c.labs[w], "--name", w, "--tls", c.ca, "--data", c.dirs[w])
}

func (c *workerCluster) waitJoined(t *testing.T, srv *serveProc) {
	t.Helper()
	waitWorkers(t, srv.url, "three workers joined", func(ws map[string]workers.WorkerStatus) bool {
		return ws["w1"].Connected && ws["w2"].Connected && ws["w3"].Connected
	}, 60*time.Second)
}

// devices reads /api/v1/devices by name.
func devices(t *testing.T, url string) map[string]server.Device {
	t.Helper()
	code, body := api(t, "GET", url+"/api/v1/devices", "", "")
	require.Equal(t, 200, code, "%s", body)
	var ds []server.Device
	require.NoError(t, json.Unmarshal(body, &ds))
	out := map[string]server.Device{}
	for _, d := range ds {
		out[d.Name] = d
	}
	return out
}

// spanningJob has one role per worker (by tag), two nodes each, that talk
// through the coordinator only: send, wait, wait-all, sync.
const spanningJob = `name = "spanning"
timeout = "4m"

[roles.a]
device_type = "sim"
count = 2
tags = ["w1"]

[roles.b]
device_type = "sim"
count = 2
tags = ["w2"]

[roles.c]
device_type = "sim"
count = 2
tags = ["w3"]

[[action]]
type = "boot"
timeout = "90s"

[[action]]
type = "test"
name = "talk"
timeout = "2m"
run = '''
echo "I am $TROUPE_NODE ($TROUPE_ROLE) on $TROUPE_BOARD"
if [ "$TROUPE_ROLE" = a ]; then troupe-send token value=42; fi
troupe-send hello node=$TROUPE_NODE
troupe-test-case hello-all --shell test "$(troupe-wait-all hello | wc -l)" -eq 5
if [ "$TROUPE_ROLE" != a ]; then troupe-test-case token --shell troupe-wait token; fi
troupe-test-case synced --shell troupe-sync done
'''
`

// TestWorkersMultiNodeJob: a 6-node MultiNode job spanning three workers,
// one role per worker, completes; every node's console reaches the
// server's logs in order.
func TestWorkersMultiNodeJob(t *testing.T) {
	c := startCluster(t, 2)
	id := submitJob(t, c.srv.url, spanningJob)
	j := waitEnded(t, c.srv.url, id, 4*time.Minute)
	require.Equal(t, report.StatusComplete, j.Status, "%+v\n%s", j, c.srv.out.String())
	for _, n := range j.Nodes {
		worker := map[string]string{"a": "w1", "b": "w2", "c": "w3"}[n.Role]
		assert.True(t, strings.HasPrefix(n.Board, worker+"-"), "node %s (role %s) on %s", n.Name, n.Role, n.Board)
	}
	require.Len(t, j.Tests, 2*3+4*4, "a nodes: hello-all, synced, talk; the others also token")
	for _, tc := range j.Tests {
		assert.Equal(t, report.Pass, tc.Result, "%s %s/%s", tc.Node, tc.Suite, tc.Name)
	}
	groupLog, err := os.ReadFile(filepath.Join(c.data, "jobs", id, "logs", "group.log"))
	require.NoError(t, err)
	for _, node := range []string{"a-0", "a-1", "b-0", "b-1", "c-0", "c-1"} {
		assert.Regexp(t, regexp.MustCompile(`(?m) `+node+` I am `+node), string(groupLog))
		raw, err := os.ReadFile(filepath.Join(c.data, "jobs", id, "logs", node+".log"))
		require.NoError(t, err)
		assert.Contains(t, string(raw), "I am "+node, "raw console of %s", node)
	}
	d := devices(t, c.srv.url)
	assert.Equal(t, "w2", d["w2-1"].Worker)
	assert.Equal(t, "online", d["w2-1"].Connection)
}
