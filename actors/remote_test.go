package actors_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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
}

// newWorkerLab is a lab of workers' boards only; the workers join in order.
func newWorkerLab(t *testing.T, workers ...worker) *workerLab {
	return newWorkerLabWith(t, nil, workers...)
}

// newWorkerLabWith is newWorkerLab with the server's image source.
func newWorkerLabWith(t *testing.T, src *images.Source, workers ...worker) *workerLab {
	t.Helper()
	w := &workerLab{t: t, dir: t.TempDir(), boards: map[string]*actor.PID{}}
	w.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	w.lab = actors.StartLab(w.system, actors.LabConfig{Lab: &lab.Lab{File: "workers"}, Workers: true, Retries: 1, BadAfter: 1,
		Images: src,
		Open: func(string, lab.Board) (actors.Backend, error) {
			t.Error("a worker's board opened on the server")
			return nil, os.ErrNotExist
		}})
	for _, wk := range workers {
		name := wk.name
		var bs []lab.Board
		for _, n := range wk.boards {
			bs = append(bs, lab.Board{Name: n, DeviceType: "sim", Tags: []string{name}, Backend: lab.Sim})
		}
		data := w.workerData(name)
		cache, err := images.NewCache(filepath.Join(data, "images"), 0, 0)
		require.NoError(t, err)
		pid, err := w.system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
			return actors.NewWorkerBoards(actors.WorkerBoardsConfig{Worker: name, Boards: bs, Images: cache,
				Open: func(_ string, b lab.Board) (actors.Backend, error) {
					sb, err := sim.New(sim.Options{Name: b.Name, Dir: filepath.Join(data, "boards", b.Name), Unsandboxed: true})
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
	w := newWorkerLab(t, worker{"w1", []string{"w1-a"}}, worker{"w2", []string{"w2-a"}})
	r, log := w.run(remotePair, nil)
	require.Equal(t, report.StatusComplete, r.Job.Status, "%+v\n%s", r, log)
	for _, tc := range r.Tests {
		assert.Equal(t, report.Pass, tc.Result, "%+v", tc)
	}
	assert.Len(t, r.Tests, 5)
	assert.Regexp(t, `(?m) left-0 hello from left-0$`, log)
	assert.Regexp(t, `(?m) right-0 hello from right-0$`, log)
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
	w := newWorkerLab(t, worker{"w1", []string{"w1-a"}}, worker{"w2", []string{"w2-a", "w2-b", "w2-c"}})
	var lostAt time.Time
	r, log := w.run(remoteLost, func(book *logbook.Book) {
		_, ch, cancel := book.Subscribe(1, 1024)
		defer cancel()
		for e := range ch {
			if strings.Contains(e.Text, "ARRIVED") && strings.Contains(e.Text, "w1-a") {
				break
			}
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
