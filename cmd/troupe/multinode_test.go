package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/report"
)

func readLog(t *testing.T, out, node string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "logs", node+".log"))
	require.NoError(t, err)
	return strings.ReplaceAll(string(b), "\r", "")
}

// readGroupLog returns the job's merged log (logs/group.log).
func readGroupLog(t *testing.T, out string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "logs", "group.log"))
	require.NoError(t, err)
	return string(b)
}

// groupLogTime returns the time of the first group.log line of node that
// contains text.
func groupLogTime(t *testing.T, out, node, text string) time.Time {
	t.Helper()
	f, err := os.Open(filepath.Join(out, "logs", "group.log"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), " ", 3)
		if len(fields) == 3 && fields[1] == node && strings.Contains(fields[2], text) {
			ts, err := time.Parse(time.RFC3339Nano, fields[0])
			require.NoError(t, err)
			return ts
		}
	}
	t.Fatalf("no line of %s with %q in group.log", node, text)
	return time.Time{}
}

func TestRelayExample(t *testing.T) {
	t.Parallel()
	res := troupe(t, "run", "--out", "OUT", "../../examples/relay.toml")
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	r := readResults(t, res.out)
	got := map[string]string{}
	for _, c := range r.Tests {
		got[c.Node+"/"+c.Suite+"/"+c.Name] = c.Result
	}
	for _, n := range []string{"client-0", "client-1", "client-2"} {
		assert.Equal(t, "pass", got[n+"/connect/greeting"], "%v", got)
		log := readLog(t, res.out, n)
		assert.Contains(t, log, "got: hello from server-0")
	}
	assert.Equal(t, "pass", got["server-0/serve/clients-fetched"])
}

func TestMultiNodeHelpers(t *testing.T) {
	t.Parallel()
	job := writeJob(t, `name = "helpers"
timeout = "1m"
[multinode]
timeout = "20s"
[roles.server]
device_type = "sim"
[roles.client]
device_type = "sim"
count = 2
[[action]]
type = "boot"
[[action]]
type = "test"
roles = ["server"]
name = "serve"
run = '''
echo "self=$(troupe-self) lself=$(lava-self) role=$(troupe-role) lrole=$(lava-role)"
echo "roles=$(troupe-role list | tr '\n' ,)"
lava-group | sed 's/^/group: /'
echo "clients=$(troupe-group client | tr '\n' ,)"
echo "myip=$TROUPE_IP query=$(troupe-network query server-0)"
lava-send ready ip=$TROUPE_IP port=80
lava-network broadcast eth0
lava-wait-all hello client | sed 's/^/printed: /'
echo "cache:"; sed 's/^/cache: /' "$LAVA_MULTI_NODE_CACHE"
lava-send first v=1
lava-send second v=2
lava-sync end
test -e "$LAVA_MULTI_NODE_CACHE" || echo "no cache after sync"
'''
[[action]]
type = "test"
roles = ["client"]
name = "connect"
run = '''
lava-wait ready | sed 's/^/printed: /'
echo "cache:"; sed 's/^/cache: /' "$LAVA_MULTI_NODE_CACHE"
lava-network broadcast eth0
lava-network collect eth0
echo "network cache:"; sed 's/^/network cache: /' "$LAVA_MULTI_NODE_CACHE"
echo "server-ip=$(lava-network query server-0)"
troupe-send hello from=$TROUPE_NODE
lava-wait first; echo "first=$(cut -d = -f 2 "$LAVA_MULTI_NODE_CACHE")"
lava-wait second; echo "second=$(cut -d = -f 2 "$LAVA_MULTI_NODE_CACHE")"
troupe-sync end
troupe-send 'bad<id' 2>&1 | sed 's/^/usage: /'
'''`)
	res := troupe(t, "run", "--out", "OUT", job)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)

	server := readLog(t, res.out, "server-0")
	assert.Contains(t, server, "self=server-0 lself=server-0 role=server lrole=server")
	assert.Contains(t, server, "roles=client,server,")
	assert.Contains(t, server, "group: client-0\tclient\ngroup: client-1\tclient\ngroup: server-0\tserver\n")
	assert.Contains(t, server, "clients=client-0,client-1,")
	assert.Regexp(t, `myip=(127\.\d+\.\d+\.\d+) query=127\.`, server)
	assert.Contains(t, server, "printed: from=client-0\nprinted: from=client-1\n")
	assert.Contains(t, server, "cache: client-0:from=client-0\ncache: client-1:from=client-1\n")

	client := readLog(t, res.out, "client-1")
	assert.Regexp(t, `printed: ip=127\.\d+\.\d+\.\d+\nprinted: port=80\n`, client)
	assert.Regexp(t, `server-ip=127\.\d+\.\d+\.\d+`, client)
	assert.Regexp(t, `\ncache: server-0:ip=127\.\d+\.\d+\.\d+\ncache: server-0:port=80\n`, client)
	assert.Regexp(t, `network cache: server-0:ipv4=127\.`, client, "lava-network collect stores the addresses")
	assert.NotContains(t, client, "network cache: server-0:port=80", "each wait replaces the cache file, as LAVA's helpers do")
	assert.Contains(t, client, "\nfirst=1\n", "the documented cut idiom on two consecutive waits")
	assert.Contains(t, client, "\nsecond=2\n", "the cache holds only the second reply")
	assert.Contains(t, server, "no cache after sync")
	assert.Contains(t, client, "usage: troupe-send: invalid message id 'bad<id'")
}

// TestDeathMidBarrier: a client's shell dies while the others wait at a
// barrier; they are released at once with an error naming it.
func TestDeathMidBarrier(t *testing.T) {
	job := writeJob(t, `name = "death"
timeout = "1m"
[multinode]
timeout = "2m"
[roles.server]
device_type = "sim"
[roles.client]
device_type = "sim"
count = 3
[[action]]
type = "boot"
[[action]]
type = "test"
roles = ["server", "client"]
name = "work"
run = '''
if [ "$TROUPE_NODE" = client-2 ]; then
  troupe-sync started
  echo "client-2 dies now"
  kill -KILL $PPID
  sleep 100
fi
troupe-sync started
troupe-sync ready; echo "sync exit $?"
lava-sync ready2; echo "lava-sync exit $?"
'''`)
	res := troupe(t, "run", "--out", "OUT", job)
	require.Equal(t, 2, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	r := readResults(t, res.out)
	assert.Equal(t, report.StatusIncomplete, r.Job.Status)
	assert.Contains(t, r.Job.Error, "client-2")
	assert.Contains(t, nodeByName(t, r, "client-2").Error, "shell died")
	assert.Less(t, r.Job.DurationS, 30.0, "nobody waited for the 2m timeout")

	// The death: the line printed just before the kill (the first
	// "login:" of client-2 is its boot's, long before).
	died := groupLogTime(t, res.out, "client-2", "client-2 dies now")
	for _, n := range []string{"server-0", "client-0", "client-1"} {
		assert.Equal(t, report.StatusComplete, nodeByName(t, r, n).Status, n)
		log := readLog(t, res.out, n)
		// A peer released earlier may have ended before n calls: it is
		// named too ("node client-0 finished its actions, node client-2 ...").
		assert.Regexp(t, `troupe-sync ready: sync 'ready': (node client-\d finished its actions, )*node client-2 died during test 'work'`, log)
		assert.Contains(t, log, "sync exit 1")
		assert.Regexp(t, `lava-sync ready2: sync 'ready2': .*node client-2 died during test 'work'`, log)
		assert.Contains(t, log, "lava-sync exit 1")
		released := groupLogTime(t, res.out, n, "troupe-sync ready: sync 'ready': ")
		// The node tells the coordinator before its board's release
		// (TestDeathReachesPeersBeforeRelease), and the replies reach the
		// peers on their side channel, not through their consoles.
		assert.Less(t, released.Sub(died), time.Second, "%s released %s after the death", n, released.Sub(died))
	}
}

// TestEndedWithoutSending: a node that finished its actions can never send
// again, so a wait-all on it fails at once.
func TestEndedWithoutSending(t *testing.T) {
	job := writeJob(t, `name = "ended"
timeout = "30s"
[multinode]
timeout = "20s"
[roles.server]
device_type = "sim"
[roles.client]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
roles = ["server"]
name = "serve"
run = "troupe-wait-all done client; echo wait-all exit $?"
[[action]]
type = "test"
roles = ["client"]
name = "quit"
run = "true"`)
	res := troupe(t, "run", "--out", "OUT", job)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	r := readResults(t, res.out)
	assert.Less(t, r.Job.DurationS, 15.0, "nobody waited for the 20s timeout")
	server := readLog(t, res.out, "server-0")
	assert.Contains(t, server, "troupe-wait-all done: wait-all 'done' (role client): node client-0 finished its actions")
	assert.Contains(t, server, "wait-all exit 1")
}

// TestCallTimeout: a call that times out names the call and the nodes that
// had not arrived; the role's timeout overrides the job's.
func TestCallTimeout(t *testing.T) {
	t.Parallel()
	job := writeJob(t, `name = "late"
timeout = "30s"
[multinode]
timeout = "20s"
[roles.busy]
device_type = "sim"
[roles.eager]
device_type = "sim"
timeout = "1s"
[[action]]
type = "boot"
[[action]]
type = "test"
roles = ["busy"]
name = "work"
run = "sleep 3; troupe-sync late; echo sync exit $?"
[[action]]
type = "test"
roles = ["eager"]
name = "hurry"
run = "troupe-sync early; echo sync exit $?; lava-sync early2; echo lava-sync exit $?"`)
	res := troupe(t, "run", "--out", "OUT", job)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	eager := readLog(t, res.out, "eager-0")
	assert.Contains(t, eager, "troupe-sync early: sync 'early' timed out after 1s: waiting for busy-0")
	assert.Contains(t, eager, "sync exit 1")
	assert.Contains(t, eager, "lava-sync early2: sync 'early2' timed out after 1s: waiting for busy-0")
	assert.Contains(t, eager, "lava-sync exit 1")
}

// TestLAVAJob: a LAVA MultiNode job definition runs unchanged, and
// import-lava prints it as a troupe job that validates.
func TestLAVAJob(t *testing.T) {
	t.Parallel()
	res := troupe(t, "run", "--out", "OUT", "../../examples/lava-multinode.yaml")
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	assert.Equal(t, 1, strings.Count(res.stderr, "troupe: no --lab: device type qemu stood in for by simulated boards"), res.stderr)
	r := readResults(t, res.out)
	assert.Equal(t, "lava-ping-pong", r.Job.Name)
	got := map[string]string{}
	for _, c := range r.Tests {
		got[c.Node+"/"+c.Name] = c.Result
	}
	assert.Equal(t, "pass", got["server-0/all-clients"], "%v", got)
	assert.Equal(t, "pass", got["client-0/got-port"], "%v", got)
	assert.Equal(t, "pass", got["client-1/got-port"], "%v", got)

	imp := troupe(t, "import-lava", "../../examples/lava-multinode.yaml")
	require.Equal(t, 0, imp.code, imp.stderr)
	assert.Contains(t, imp.stdout, `name = "lava-ping-pong"`)
	p := filepath.Join(t.TempDir(), "imported.toml")
	require.NoError(t, os.WriteFile(p, []byte(imp.stdout), 0o644))
	v := troupe(t, "validate", p)
	assert.Equal(t, 0, v.code, v.stderr)

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("job_name: x\nprotocols:\n  lava-multinode:\n    roles:\n      a: {device_type: sim, count: 1}\nactions:\n- test:\n    definitions:\n    - {from: url, repository: 'https://example.com/x.yaml', name: x, path: x.yaml}\n"), 0o644))
	for _, cmd := range []string{"run", "validate", "import-lava"} {
		res := troupe(t, cmd, bad)
		assert.Equal(t, 3, res.code, cmd)
		assert.Contains(t, res.stderr, "bad.yaml:9:", cmd)
		assert.Contains(t, res.stderr, `"url" is not supported`, cmd)
	}
}

// TestActionRequests: MultiNode calls listed in an action's before run
// before that action, on the node itself (LAVA's action-level protocol
// requests): the server boots only after the client said go.
func TestActionRequests(t *testing.T) {
	t.Parallel()
	job := writeJob(t, `name = "before"
timeout = "1m"
[multinode]
timeout = "20s"
[roles.server]
device_type = "sim"
[roles.client]
device_type = "sim"
[[action]]
type = "boot"
roles = ["client"]
[[action]]
type = "test"
roles = ["client"]
name = "go"
run = '''
echo "client says go"
lava-send go from=client
lava-wait booted | sed 's/^/got: /'
'''
[[action]]
type = "boot"
roles = ["server"]
before = ["wait go", "send booting"]
[[action]]
type = "test"
roles = ["server"]
name = "up"
before = ["send booted at=server"]
run = 'echo "server up"'
`)
	res := troupe(t, "run", "--out", "OUT", job)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	client := readLog(t, res.out, "client-0")
	assert.Contains(t, client, "got: at=server")
	server := readLog(t, res.out, "server-0")
	assert.Contains(t, server, "server up")
	assert.NotContains(t, res.stderr, "stood in for", "sim boards stand in for nothing")
	said := groupLogTime(t, res.out, "client-0", "client says go")
	booted := groupLogTime(t, res.out, "server-0", "login:")
	assert.False(t, booted.Before(said), "the server boots after the client sent go (%s, %s)", said, booted)
}
