package actors

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/coordinator"
	"github.com/troupe-lab/troupe/internal/lockedbuf"
	"github.com/troupe-lab/troupe/jobs"
)

type answered struct {
	rep coordinator.Reply
	err error
}

// TestStartAnswersOnce: calls taken with mnClient.Start are answered by
// the coordinator actor itself (on its goroutine: no goroutine waits per
// call), every member of a barrier before any later message is handled,
// each exactly once.
func TestStartAnswersOnce(t *testing.T) {
	const n = 5
	members := make([]coordinator.Member, n)
	for i := range members {
		members[i] = coordinator.Member{Name: string(rune('a'+i)) + "-0", Role: "r"}
	}
	group, err := coordinator.New(members)
	require.NoError(t, err)
	logger := slog.New(slog.DiscardHandler)
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger }))
	defer system.Shutdown()
	j := &jobs.Job{Name: "start"}
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return newCoordActor(Config{Job: j, Clock: RealClock{}, Logger: logger}, group)
	}))
	defer system.Root.Stop(pid)

	got := make(chan answered, 2*n)
	var inPass []int // members answered, recorded on the coordinator's goroutine (no lock needed)
	for i, m := range members {
		c := mnClient{root: system.Root, coord: pid, node: m.Name, timeout: time.Minute}
		c.Start(coordinator.Request{Kind: coordinator.Sync, ID: "s1"}, func(rep coordinator.Reply, err error) {
			inPass = append(inPass, i)
			got <- answered{rep: rep, err: err}
		})
	}
	for range n {
		select {
		case a := <-got:
			require.NoError(t, a.err)
			assert.True(t, a.rep.OK)
			assert.Equal(t, coordinator.Sync, a.rep.Kind)
		case <-time.After(10 * time.Second):
			t.Fatal("the barrier was not released")
		}
	}
	// A later call's answer proves the coordinator has moved on: by then
	// the barrier's answers were all given, once each.
	movedOn(t, system, pid, members[0].Name)
	assert.Len(t, inPass, n, "each member answered once")
	assert.Empty(t, got)
}

// TestStartWithoutCoordinator: a call taken with Start whose coordinator
// never answers (stopped) gets an error once its timeout and the slack
// have passed, instead of waiting for ever.
func TestStartWithoutCoordinator(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger }))
	defer system.Shutdown()
	pid := system.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	require.NoError(t, system.Root.StopFuture(pid).Wait())

	got := make(chan answered, 2)
	c := mnClient{root: system.Root, coord: pid, node: "a-0", timeout: time.Millisecond}
	c.Start(coordinator.Request{Kind: coordinator.Sync, ID: "s1"}, func(rep coordinator.Reply, err error) {
		got <- answered{rep: rep, err: err}
	})
	select {
	case a := <-got:
		require.Error(t, a.err)
		assert.Contains(t, a.err.Error(), "no answer from the coordinator within")
	case <-time.After(slack + 10*time.Second):
		t.Fatal("no answer at all")
	}
}

// TestReleaseIsLogged: a barrier's release is one debug record with its
// id and members (what the runner benchmarks time barriers by); the
// calls before it log nothing.
func TestReleaseIsLogged(t *testing.T) {
	members := []coordinator.Member{{Name: "a-0", Role: "r"}, {Name: "b-0", Role: "r"}, {Name: "c-0", Role: "r"}}
	group, err := coordinator.New(members)
	require.NoError(t, err)
	var logs lockedbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
	defer system.Shutdown()
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return newCoordActor(Config{Job: &jobs.Job{Name: "paced"}, Clock: RealClock{}, Logger: logger}, group)
	}))
	defer system.Root.Stop(pid)
	got := make(chan answered, len(members))
	for i, m := range members {
		c := mnClient{root: system.Root, coord: pid, node: m.Name, timeout: time.Minute}
		c.Start(coordinator.Request{Kind: coordinator.Sync, ID: "s1"}, func(rep coordinator.Reply, err error) {
			got <- answered{rep: rep, err: err}
		})
		if i < len(members)-1 {
			assert.Empty(t, logs.String(), "released before the last member came")
		}
	}
	for range members {
		select {
		case a := <-got:
			require.NoError(t, a.err)
		case <-time.After(10 * time.Second):
			t.Fatal("the barrier was not released")
		}
	}
	// The record follows the replies: a later call's answer proves the
	// coordinator has moved on.
	movedOn(t, system, pid, members[0].Name)
	out := logs.String()
	assert.Equal(t, 1, strings.Count(out, "barrier released"), out)
	assert.Contains(t, out, "job=paced id=s1 members=3")
}

// movedOn returns once the coordinator at pid has answered a send of node
// made now: everything it was handed before has been handled.
func movedOn(t *testing.T, system *actor.ActorSystem, pid *actor.PID, node string) {
	t.Helper()
	flush := make(chan struct{})
	mnClient{root: system.Root, coord: pid, node: node, timeout: time.Minute}.
		Start(coordinator.Request{Kind: coordinator.Send, ID: "flush"}, func(coordinator.Reply, error) { close(flush) })
	select {
	case <-flush:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to the send")
	}
}
