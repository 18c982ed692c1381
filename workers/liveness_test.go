package workers

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/internal/manualclock"
	"github.com/troupe-lab/troupe/labca"
	"github.com/troupe-lab/troupe/workers/workerpb"
)

// waitArmed waits (a bounded poll) until a timer is armed again: the
// actor handled what the last one sent.
func waitArmed(t *testing.T, c *manualclock.Clock) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.Armed() == 0 {
		require.True(t, time.Now().Before(deadline), "no timer armed")
		time.Sleep(time.Millisecond) // a deadline poll
	}
}

// tick moves the hub's clock on by d and waits for the tick's handling
// (the next tick armed, and a query answered behind it).
func tick(t *testing.T, system *actor.ActorSystem, hub *Hub, c *manualclock.Clock, d time.Duration) []WorkerStatus {
	t.Helper()
	waitArmed(t, c)
	c.Advance(d)
	waitArmed(t, c)
	ws, err := hub.Workers()
	require.NoError(t, err)
	return ws
}

func connectedOf(ws []WorkerStatus) map[string]bool {
	out := map[string]bool{}
	for _, w := range ws {
		out[w.Name] = w.Connected
	}
	return out
}

// TestHubAliveWhileMessagesFlow: a worker whose heartbeats are late but
// whose other messages (console batches, MultiNode calls) arrive is not
// lost; once nothing arrives for LostAfter it is.
func TestHubAliveWhileMessagesFlow(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	clock := manualclock.New()
	traffic := NewTraffic(clock)
	lost := make(chan string, 10)
	hub, err := StartHub(system, HubConfig{Clock: clock, Traffic: traffic, Lost: func(w string) { lost <- w }})
	require.NoError(t, err)
	defer hub.Stop()
	for _, w := range []string{"w1", "w2"} {
		require.Empty(t, ask(t, system, &workerpb.Register{Worker: w, Incarnation: "1", Boards: boards(w + "-b")}).(*workerpb.Registered).Error)
	}
	// No heartbeat from either for 10 s; w1's batches keep arriving.
	for range 10 {
		traffic.Seen("w1")
		tick(t, system, hub, clock, DefaultHeartbeat)
	}
	assert.Equal(t, map[string]bool{"w1": true, "w2": false}, connectedOf(tick(t, system, hub, clock, 0)))
	assert.Equal(t, "w2", <-lost)
	// Now w1 falls silent too.
	for range int(DefaultLostAfter / DefaultHeartbeat) {
		tick(t, system, hub, clock, DefaultHeartbeat)
	}
	assert.Equal(t, "w1", <-lost)
}

// TestHubStalledJudgesLater: a hub held up past its tick (a starved
// host) does not declare lost the workers whose heartbeats queued
// meanwhile: the late tick judges no one, the next one does.
func TestHubStalledJudgesLater(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	clock := manualclock.New()
	lost := make(chan string, 10)
	hub, err := StartHub(system, HubConfig{Clock: clock, Lost: func(w string) { lost <- w }})
	require.NoError(t, err)
	defer hub.Stop()
	for _, w := range []string{"w1", "w2"} {
		require.Empty(t, ask(t, system, &workerpb.Register{Worker: w, Incarnation: "1", Boards: boards(w + "-b")}).(*workerpb.Registered).Error)
	}
	// The hub's tick comes 7 s late.
	assert.Equal(t, map[string]bool{"w1": true, "w2": true}, connectedOf(tick(t, system, hub, clock, 7*time.Second)))
	// w1's heartbeat, queued during the stall, comes in; w2's does not.
	assert.True(t, ask(t, system, &workerpb.Heartbeat{Worker: "w1", Incarnation: "1"}).(*workerpb.HeartbeatAck).Known)
	assert.Equal(t, map[string]bool{"w1": true, "w2": false}, connectedOf(tick(t, system, hub, clock, DefaultHeartbeat)))
	assert.Equal(t, "w2", <-lost)
	// Late ticks one after the other: every other one judges, so a worker
	// killed is still noticed.
	for range 2 {
		tick(t, system, hub, clock, 3*time.Second)
	}
	assert.Equal(t, "w1", <-lost)
}

// TestWorkerKeepsServerWhileMessagesFlow: a worker whose heartbeats go
// unanswered (the answers late behind other traffic) but that receives
// the server's other messages keeps its registration; once nothing comes
// for LostAfter it registers again (after resetting its boards).
func TestWorkerKeepsServerWhileMessagesFlow(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	clock := manualclock.New()
	traffic := NewTraffic(clock)
	registers := make(chan *workerpb.Register, 10)
	// A hub that registers and never answers a heartbeat.
	_, err := system.Root.SpawnNamed(actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(*workerpb.Register); ok {
			registers <- m
			c.Respond(&workerpb.Registered{HeartbeatMs: DefaultHeartbeat.Milliseconds()})
		}
	}), HubName)
	require.NoError(t, err)
	resets := make(chan struct{}, 10)
	w := StartWorker(system, WorkerConfig{Name: "w1", Server: system.Address(), Incarnation: "1", Clock: clock, Traffic: traffic,
		Reset: func() { resets <- struct{}{} }})
	defer w.Stop()
	require.Equal(t, uint64(0), (<-registers).Generation)
	waitRegistered := func() {
		t.Helper()
		// The worker's heartbeat timer (1 s) replaces the registration's.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if left, armed := clock.Latest(); armed && left == DefaultHeartbeat {
				return
			}
			require.True(t, time.Now().Before(deadline), "worker not registered")
			time.Sleep(time.Millisecond) // a deadline poll
		}
	}
	waitRegistered()
	for range 10 {
		traffic.Seen(labca.ServerName)
		clock.Advance(DefaultHeartbeat)
		waitArmed(t, clock)
	}
	assert.Empty(t, resets, "the server's messages flow: it is not lost")
	assert.Empty(t, registers)
	for range int(DefaultLostAfter/DefaultHeartbeat) + 1 {
		clock.Advance(DefaultHeartbeat)
		waitArmed(t, clock)
	}
	select {
	case <-resets:
	case <-time.After(10 * time.Second):
		t.Fatal("a silent server not noticed")
	}
	assert.Equal(t, uint64(1), (<-registers).Generation)
}

// TestWorkerStalledJudgesLater: a worker process held up past its tick (a
// starved host) does not give the server up at that late tick: what the
// server sent meanwhile may still be on its way in; the next tick judges.
func TestWorkerStalledJudgesLater(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	clock := manualclock.New()
	traffic := NewTraffic(clock)
	registers := make(chan *workerpb.Register, 10)
	_, err := system.Root.SpawnNamed(actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(*workerpb.Register); ok {
			registers <- m
			c.Respond(&workerpb.Registered{HeartbeatMs: DefaultHeartbeat.Milliseconds()})
		}
	}), HubName)
	require.NoError(t, err)
	resets := make(chan struct{}, 10)
	w := StartWorker(system, WorkerConfig{Name: "w1", Server: system.Address(), Incarnation: "1", Clock: clock, Traffic: traffic,
		Reset: func() { resets <- struct{}{} }})
	defer w.Stop()
	<-registers
	traffic.Seen(serverPeer) // registered: the server's answer came
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, armed := clock.Latest(); armed && clock.Made() > 1 {
			break
		}
		require.True(t, time.Now().Before(deadline), "worker not registered")
		time.Sleep(time.Millisecond) // a deadline poll
	}
	// The tick comes 7 s late: past LostAfter, but not judged.
	clock.Advance(DefaultHeartbeat + 7*time.Second)
	waitArmed(t, clock)
	assert.Empty(t, resets)
	// What the server sent during the stall comes in; the next tick judges.
	traffic.Seen(serverPeer)
	clock.Advance(DefaultHeartbeat)
	waitArmed(t, clock)
	assert.Empty(t, resets)
	assert.Empty(t, registers)
	// Late ticks one after the other: every other one judges.
	for range 2 {
		clock.Advance(DefaultLostAfter)
		waitArmed(t, clock)
	}
	select {
	case <-resets:
	case <-time.After(10 * time.Second):
		t.Fatal("a silent server not noticed")
	}
}
