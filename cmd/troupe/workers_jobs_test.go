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

// lostJob: five nodes of any sim board; each passes a first barrier, says
// so, and after a pause meets the others at a second one.
const lostJob = `name = "survivor"
timeout = "4m"

[roles.lead]
device_type = "sim"
count = 1

[roles.peer]
device_type = "sim"
count = 4

[[action]]
type = "boot"
timeout = "90s"

[[action]]
type = "test"
name = "meet"
timeout = "2m"
run = '''
troupe-sync started
echo "PAST-START $TROUPE_NODE"
sleep 5
troupe-test-case finished --shell troupe-sync finished
'''
`

// logLineRE is a line of a job's group.log: time, node, text.
var logLineRE = regexp.MustCompile(`(?m)^(\S+) (\S+) (.*)$`)

// TestWorkersKillMidTest: kill -9 of a worker while its nodes are in a
// test: the peers waiting for them at a barrier are released within 10 s
// naming the lost nodes, the job is retried and completes on the other
// workers' spare boards, and the killed worker's boards show offline, not
// bad.
func TestWorkersKillMidTest(t *testing.T) {
	c := startCluster(t, 3)
	id := submitJob(t, c.srv.url, lostJob)
	groupLog := filepath.Join(c.data, "jobs", id, "logs", "group.log")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		b, _ := os.ReadFile(groupLog)
		if strings.Count(string(b), "PAST-START") == 5 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the nodes did not pass the first barrier:\n%s", b)
		time.Sleep(50 * time.Millisecond) // a deadline poll of the log file
	}
	// The worker of the lead's board (its peers are on others too).
	j := getJob(t, c.srv.url, id)
	var victim string
	lost := map[string]bool{}
	for _, n := range j.Nodes {
		if n.Name == "lead-0" {
			victim = strings.SplitN(n.Board, "-", 2)[0]
		}
	}
	for _, n := range j.Nodes {
		if strings.HasPrefix(n.Board, victim+"-") {
			lost[n.Name] = true
		}
	}
	require.NotEmpty(t, victim, "%+v", j.Nodes)
	require.Less(t, len(lost), 5, "some peers are on other workers: %+v", j.Nodes)
	require.NoError(t, c.procs[victim].cmd.Process.Kill())
	killed := time.Now()

	j = waitEnded(t, c.srv.url, id, 4*time.Minute)
	assert.Equal(t, report.StatusComplete, j.Status, "retried on the remaining boards: %+v", j)
	require.Len(t, j.Attempts, 1)
	assert.Contains(t, j.Attempts[0].Error, "worker "+victim+" lost: node ")
	for n := range lost {
		assert.Contains(t, j.Attempts[0].Error, n)
	}
	for _, n := range j.Nodes {
		assert.False(t, strings.HasPrefix(n.Board, victim+"-"), "retry on a board of the lost worker: %+v", n)
	}

	// A peer's second barrier failed naming the lost nodes, within 10 s.
	b, err := os.ReadFile(groupLog)
	require.NoError(t, err)
	var released time.Time
	for _, m := range logLineRE.FindAllStringSubmatch(string(b), -1) {
		if lost[m[2]] || !strings.Contains(m[3], "troupe-sync finished:") || !strings.Contains(m[3], "worker "+victim+" lost") {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		require.NoError(t, err)
		named := false
		for n := range lost {
			named = named || strings.Contains(m[3], "node "+n+" worker "+victim+" lost")
		}
		assert.True(t, named, "the release names a lost node: %s", m[3])
		released = at
		break
	}
	require.False(t, released.IsZero(), "no peer was released naming worker %s:\n%s", victim, b)
	assert.Less(t, released.Sub(killed), 10*time.Second, "peers released %s after the kill", released.Sub(killed))
	t.Logf("peers released %s after the kill", released.Sub(killed).Round(time.Millisecond))

	d := devices(t, c.srv.url)
	for i := range 3 {
		dev := d[fmt.Sprintf("%s-%d", victim, i)]
		assert.Equal(t, "offline", dev.Connection, "%+v", dev)
		assert.NotEqual(t, "bad", dev.Health, "%+v", dev)
	}
	r := troupe(t, "devices", "--server", c.srv.url)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `(?m)^`+victim+`\s+offline\s`, r.stdout)
	assert.Regexp(t, `(?m)^`+victim+`-0\s+sim\s+`+victim+`:offline\s+good\s`, r.stdout)
}

// restartJob runs one node on each worker, for a while.
const restartJob = `name = "%s"
timeout = "4m"

[roles.a]
device_type = "sim"
count = 1
tags = ["w1"]

[roles.b]
device_type = "sim"
count = 1
tags = ["w2"]

[roles.c]
device_type = "sim"
count = 1
tags = ["w3"]

[[action]]
type = "boot"
timeout = "90s"

[[action]]
type = "test"
name = "work"
timeout = "2m"
run = '''
echo "WORKING $TROUPE_NODE"
troupe-sync begun
sleep %d
troupe-test-case done --shell troupe-sync done
'''
`

// TestWorkersServerRestart: the server is killed (-9) with a job running
// on the workers' boards and another queued behind it; restarted, it is
// rejoined by the workers, and both jobs run to completion on them.
func TestWorkersServerRestart(t *testing.T) {
	c := startCluster(t, 1)
	running := submitJob(t, c.srv.url, fmt.Sprintf(restartJob, "first", 3))
	queued := submitJob(t, c.srv.url, fmt.Sprintf(restartJob, "second", 0))
	groupLog := filepath.Join(c.data, "jobs", running, "logs", "group.log")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		b, _ := os.ReadFile(groupLog)
		if strings.Count(string(b), "WORKING") == 3 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the first job did not start:\n%s", b)
		time.Sleep(50 * time.Millisecond) // a deadline poll of the log file
	}
	assert.Equal(t, "queued", getJob(t, c.srv.url, queued).Status)
	c.srv.kill9(t)

	srv2 := startServe(t, "--data", c.data, "--workers", c.addr, "--tls", c.ca)
	c.waitJoined(t, srv2)
	for _, id := range []string{running, queued} {
		j := waitEnded(t, srv2.url, id, 4*time.Minute)
		assert.Equal(t, report.StatusComplete, j.Status, "%+v", j)
	}
	j := getJob(t, srv2.url, running)
	require.Len(t, j.Attempts, 1)
	assert.Contains(t, j.Attempts[0].Error, "server stopped during the run")

	// A worker board's health set by hand outlives the server.
	code, body := api(t, "PUT", srv2.url+"/api/v1/devices/w2-0/health", "", `{"health": "retired"}`)
	require.Equal(t, 200, code, "%s", body)
	srv2.kill9(t)
	srv3 := startServe(t, "--data", c.data, "--workers", c.addr, "--tls", c.ca)
	c.waitJoined(t, srv3)
	assert.Equal(t, "retired", devices(t, srv3.url)["w2-0"].Health)
}
