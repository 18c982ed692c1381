package actors_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/sim"
	"github.com/troupe-lab/troupe/workers/images"
)

// The board proxy and board host in one process: the lab's node actors
// drive board actors spawned by a worker's boards actor through the
// protobuf messages that cross the remote between processes (the remote
// itself is tested through processes, cmd/troupe).

type workerLab struct {
	t      *testing.T
	dir    string
	system *actor.ActorSystem
	lab    *actors.Lab
	boards map[string]*actor.PID // worker → its boards actor
}

// worker is a worker's name and boards, for newWorkerLab.
type worker struct {
	name   string
	boards []string
	// sandboxed: its sim boards are sandboxed, on the group networks of
	// that worker (the others are not: the actors under test, not the
	// sandbox).
	sandboxed bool
	broken    bool // its boards do not open
}

// newWorkerLab is a lab of workers' boards only; the workers join in order.
func newWorkerLab(t *testing.T, workers ...worker) *workerLab {
	return newWorkerLabWith(t, server{}, workers...)
}

// server is what a workerLab's server has besides its workers: its image
// source, and boards of its own (none: opening one is an error).
type server struct {
	images    *images.Source
	boards    []lab.Board
	open      func(node string, b lab.Board) (actors.Backend, error)
	addresses map[string]string // board → address
	noRetry   bool              // a job ended by an infrastructure error is not rerun
}

// newWorkerLabWith is newWorkerLab with a server of srv's.
func newWorkerLabWith(t *testing.T, srv server, workers ...worker) *workerLab {
	t.Helper()
	w := &workerLab{t: t, dir: t.TempDir(), boards: map[string]*actor.PID{}}
	w.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	open := srv.open
	if open == nil {
		open = func(string, lab.Board) (actors.Backend, error) {
			t.Error("a worker's board opened on the server")
			return nil, os.ErrNotExist
		}
	}
	retries := 1
	if srv.noRetry {
		retries = 0
	}
	w.lab = actors.StartLab(w.system, actors.LabConfig{Lab: &lab.Lab{File: "workers", Boards: srv.boards}, Workers: true, Retries: retries, BadAfter: 1,
		Images: srv.images, Open: open, Addresses: srv.addresses})
	for _, wk := range workers {
		name := wk.name
		var bs []lab.Board
		for _, n := range wk.boards {
			bs = append(bs, lab.Board{Name: n, DeviceType: "sim", Tags: []string{name}, Backend: lab.Sim})
		}
		data := w.workerData(name)
		cache, err := images.NewCache(filepath.Join(data, "images"), 0, 0)
		require.NoError(t, err)
		nets, unsandboxed, broken := sim.NewNetworks(), !wk.sandboxed, wk.broken
		pid, err := w.system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
			return actors.NewWorkerBoards(actors.WorkerBoardsConfig{Worker: name, Boards: bs, Images: cache,
				Open: func(_ string, b lab.Board) (actors.Backend, error) {
					if broken {
						return nil, errors.New("no power here")
					}
					sb, err := sim.New(sim.Options{Name: b.Name, Dir: filepath.Join(data, "boards", b.Name), Networks: nets, Unsandboxed: unsandboxed})
					return workerSim{Board: sb, data: data}, err
				}})
		}), "boards-"+name)
		require.NoError(t, err)
		w.boards[name] = pid
		w.lab.BoardsJoined(name, pid, bs)
	}
	t.Cleanup(func() {
		assert.NoError(t, w.lab.Stop())
		w.system.Shutdown()
		goleak.VerifyNone(t, leakOptions...)
	})
	return w
}

// workerData is worker name's data directory.
func (w *workerLab) workerData(name string) string {
	return filepath.Join(w.dir, "workers", name)
}

// workerSim is a sim board on a worker that reads no image outside its
// worker's data directory: the server's files are not the worker's.
type workerSim struct {
	*sim.Board
	data string
}

func (b workerSim) Deploy(ctx context.Context, image string) error {
	if rel, err := filepath.Rel(b.data, image); image != "" && (err != nil || !filepath.IsLocal(rel)) {
		return fmt.Errorf("deploy %s: not a file of this worker (%s)", image, b.data)
	}
	return b.Board.Deploy(ctx, image)
}

func (w *workerLab) run(src string, during func(book *logbook.Book)) (*report.Results, string) {
	w.t.Helper()
	j, err := jobs.Parse(filepath.Join(w.dir, "job.toml"), []byte(src))
	require.NoError(w.t, err)
	out := filepath.Join(w.dir, j.Name)
	book, err := logbook.New(out, nil)
	require.NoError(w.t, err)
	done := make(chan *report.Results, 1)
	w.lab.Submit(actors.Submission{Job: j, Book: book, Done: func(r *report.Results) { done <- r }})
	if during != nil {
		during(book)
	}
	select {
	case r := <-done:
		require.NoError(w.t, book.Close())
		log, err := os.ReadFile(filepath.Join(out, "logs", logbook.GroupFile))
		require.NoError(w.t, err)
		return r, string(log)
	case <-time.After(2 * time.Minute):
		w.t.Fatalf("job %s did not end", j.Name)
		return nil, ""
	}
}

const remotePair = `name = "pair"
timeout = "2m"
[roles.left]
device_type = "sim"
tags = ["w1"]
[roles.right]
device_type = "sim"
tags = ["w2"]
[[action]]
type = "boot"
[[action]]
type = "test"
name = "talk"
timeout = "1m"
run = '''
echo "hello from $TROUPE_NODE"
if [ "$TROUPE_ROLE" = left ]; then troupe-send greeting word=hi; fi
if [ "$TROUPE_ROLE" = right ]; then troupe-test-case got --shell sh -c 'troupe-wait greeting | grep -q word=hi'; fi
troupe-test-case synced --shell troupe-sync done
'''
`

// TestRemoteBoardsRunAJob: a group spanning two workers' boards runs
// through board proxies: boot, test shell, MultiNode calls and console
// lines, in order, all reach the server's side.
func TestRemoteBoardsRunAJob(t *testing.T) {
	w := newWorkerLab(t, worker{name: "w1", boards: []string{"w1-a"}}, worker{name: "w2", boards: []string{"w2-a"}})
	r, log := w.run(remotePair, nil)
	require.Equal(t, report.StatusComplete, r.Job.Status, "%+v\n%s", r, log)
	for _, tc := range r.Tests {
		assert.Equal(t, report.Pass, tc.Result, "%+v", tc)
	}
	assert.Len(t, r.Tests, 5)
	assert.Regexp(t, `(?m) left-0 hello from left-0$`, log)
	assert.Regexp(t, `(?m) right-0 hello from right-0$`, log)
}

const remoteNetwork = `name = "net"
timeout = "2m"
[roles.server]
device_type = "sim"
tags = ["w1"]
[roles.client]
device_type = "sim"
tags = ["w1"]
[roles.far]
device_type = "sim"
tags = ["w2"]
[[action]]
type = "boot"
[[action]]
type = "test"
name = "net"
timeout = "1m"
run = '''
echo "ADDR $TROUPE_NODE $TROUPE_IP"
sed "s/^/GROUP $TROUPE_NODE /" "$TROUPE_DIR/group"
case $TROUPE_ROLE in
server)
	(echo pong | nc -l -N "$TROUPE_IP" 7000 >/dev/null 2>&1 &)
	troupe-send ready ip="$TROUPE_IP"
	;;
client)
	eval "$(troupe-wait ready)"
	troupe-test-case reach --shell sh -c "for i in 1 2 3 4 5 6 7 8 9 10; do nc -w 2 -N $ip 7000 </dev/null | grep -q pong && exit 0; sleep 0.2; done; exit 1"
	;;
esac
troupe-test-case synced --shell troupe-sync done
'''
`

// TestRemoteBoardsShareTheirWorkersNetwork: a group's sandboxed sim
// boards on one worker join one network there, with addresses the worker
// gives (the server has none for a worker's boards): the client reaches
// the server's listener at the address it sent. A node on another worker
// has its own network and address; the others' addresses are not its
// worker's to give (empty in its group file).
func TestRemoteBoardsShareTheirWorkersNetwork(t *testing.T) {
	w := newWorkerLab(t, worker{name: "w1", boards: []string{"w1-a", "w1-b"}, sandboxed: true}, worker{name: "w2", boards: []string{"w2-a"}, sandboxed: true})
	r, log := w.run(remoteNetwork, nil)
	require.Equal(t, report.StatusComplete, r.Job.Status, "%+v\n%s", r, log)
	got := map[string]string{}
	for _, tc := range r.Tests {
		got[tc.Node+"/"+tc.Name] = tc.Result
	}
	assert.Equal(t, report.Pass, got["client-0/reach"], "%v\n%s", got, log)
	ip := func(node string) string {
		m := regexp.MustCompile(`(?m) ` + node + ` ADDR ` + node + ` (\S*)$`).FindStringSubmatch(log)
		require.NotNil(t, m, "%s's address in\n%s", node, log)
		return m[1]
	}
	server, client, far := ip("server-0"), ip("client-0"), ip("far-0")
	for _, a := range []string{server, client, far} {
		assert.Regexp(t, `^127\.1\.0\.\d+$`, a)
	}
	assert.NotEqual(t, server, client)
	assert.Regexp(t, `(?m) client-0 GROUP client-0 server-0\s+server\s+`+regexp.QuoteMeta(server)+`$`, log, "the client's group file")
	assert.Regexp(t, `(?m) far-0 GROUP far-0 server-0\s+server\s*$`, log, "a node on another worker has no address of the server")
	assert.Regexp(t, `(?m) far-0 GROUP far-0 far-0\s+far\s+`+regexp.QuoteMeta(far)+`$`, log)
}

// TestRemoteBoardNotOpened: a worker that cannot open its board ends the
// node incomplete before its first action, saying so.
func TestRemoteBoardNotOpened(t *testing.T) {
	w := newWorkerLabWith(t, server{noRetry: true}, worker{name: "w1", boards: []string{"w1-a"}, broken: true})
	r, log := w.run(`name = "unopened"
timeout = "1m"
[roles.a]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "t"
run = "true"
`, nil)
	require.Equal(t, report.StatusIncomplete, r.Job.Status, "%+v\n%s", r, log)
	require.Len(t, r.Nodes, 1)
	assert.Equal(t, "open board w1-a on worker w1: no power here", r.Nodes[0].Error)
	assert.Equal(t, report.Infrastructure, r.Nodes[0].Class)
	assert.Empty(t, r.Tests)
}

// joinRecorder is a server's board that records the groups it joins.
type joinRecorder struct {
	*sim.Board
	joined chan lab.Group
}

func (b joinRecorder) JoinGroup(g lab.Group) (map[string]string, error) {
	b.joined <- g
	return b.Board.JoinGroup(g)
}

// TestServerBoardJoinsWithItsHostsBoardsOnly: a server's board of a group
// that also has a worker's board joins a network with the server's boards
// only (a QEMU board would otherwise give the worker's node an address on
// the server's network), knowing the lab's addresses.
func TestServerBoardJoinsWithItsHostsBoardsOnly(t *testing.T) {
	joined := make(chan lab.Group, 1)
	dir := t.TempDir()
	w := newWorkerLabWith(t, server{
		boards:    []lab.Board{{Name: "s-a", DeviceType: "sim", Tags: []string{"here"}, Backend: lab.Sim}},
		addresses: map[string]string{"s-a": "127.9.0.1"},
		open: func(_ string, b lab.Board) (actors.Backend, error) {
			sb, err := sim.New(sim.Options{Name: b.Name, Dir: filepath.Join(dir, b.Name), Unsandboxed: true})
			return joinRecorder{Board: sb, joined: joined}, err
		}}, worker{name: "w1", boards: []string{"w1-a"}})
	r, log := w.run(`name = "mixed"
timeout = "1m"
[roles.here]
device_type = "sim"
tags = ["here"]
[roles.there]
device_type = "sim"
tags = ["w1"]
[[action]]
type = "boot"
[[action]]
type = "test"
name = "t"
run = "troupe-sync met"
`, nil)
	require.Equal(t, report.StatusComplete, r.Job.Status, "%+v\n%s", r, log)
	select {
	case g := <-joined:
		assert.Equal(t, []string{"here-0"}, slices.Sorted(maps.Keys(g.Boards)), "the boards of the server only")
		assert.Len(t, g.Nodes, 2, "every node of the group")
		assert.Equal(t, "127.9.0.1", g.Addresses["here-0"])
	default:
		t.Fatal("the server's board joined no group")
	}
}

const remoteLost = `name = "lost"
timeout = "2m"
[roles.a]
device_type = "sim"
[roles.b]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "meet"
timeout = "1m"
run = '''
echo "ARRIVED $TROUPE_NODE $TROUPE_BOARD"
if [ "$TROUPE_BOARD" = w1-a ]; then sleep 50; fi
troupe-test-case met --shell troupe-sync met
'''
`

// TestRemoteWorkerLost: a worker lost mid-test: its node ends incomplete
// "worker w1 lost", its peer waiting at a barrier is released at once
// naming it, and the job is retried on the other worker's boards.
func TestRemoteWorkerLost(t *testing.T) {
	w := newWorkerLab(t, worker{name: "w1", boards: []string{"w1-a"}}, worker{name: "w2", boards: []string{"w2-a", "w2-b", "w2-c"}})
	// Two of w2's boards held for manual work: the group cannot be on w2
	// alone, so it spans both workers; they are free for the retry.
	for _, b := range []string{"w2-b", "w2-c"} {
		require.NoError(t, w.lab.Reserve(b, "test", time.Now().Add(time.Hour)))
	}
	var lostAt time.Time
	r, log := w.run(remoteLost, func(book *logbook.Book) {
		_, ch, cancel := book.Subscribe(1, 1024)
		defer cancel()
		timeout := time.After(time.Minute)
	wait:
		for {
			select {
			case e := <-ch:
				if strings.Contains(e.Text, "ARRIVED") && strings.Contains(e.Text, "w1-a") {
					break wait
				}
			case <-timeout:
				t.Fatal("no node arrived on w1-a within a minute")
			}
		}
		for _, b := range []string{"w2-b", "w2-c"} {
			require.NoError(t, w.lab.Release(b))
		}
		lostAt = time.Now()
		w.lab.WorkerLost("w1")
	})
	require.Equal(t, report.StatusComplete, r.Job.Status, "%+v\n%s", r, log)
	require.Len(t, r.Job.Attempts, 1)
	assert.Contains(t, r.Job.Attempts[0].Error, "worker w1 lost: node ")
	for _, n := range r.Nodes {
		assert.True(t, strings.HasPrefix(n.Board, "w2-"), "%+v", n)
	}
	// The peer's barrier was answered at once, naming the lost node.
	var released bool
	for _, line := range strings.Split(log, "\n") {
		f := strings.SplitN(line, " ", 3)
		if len(f) == 3 && strings.Contains(f[2], "troupe-sync met:") && strings.Contains(f[2], "worker w1 lost") {
			at, err := time.Parse(time.RFC3339Nano, f[0])
			require.NoError(t, err)
			assert.Less(t, at.Sub(lostAt), 5*time.Second)
			released = true
		}
	}
	assert.True(t, released, "no peer released naming the lost node:\n%s", log)
	bs, err := w.lab.Boards()
	require.NoError(t, err)
	for _, b := range bs {
		if b.Name == "w1-a" {
			assert.True(t, b.Offline)
			assert.Equal(t, "w1", b.Worker)
			assert.Zero(t, b.Failures, "a lost worker's board is not blamed")
			assert.NotEqual(t, "bad", string(b.Health))
		}
	}
}
