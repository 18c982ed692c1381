package workers

import (
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/internal/lockedbuf"
	"github.com/troupe-lab/troupe/labca"
	"github.com/troupe-lab/troupe/workers/workerpb"
)

// The remote itself (mutual TLS, a certificate naming another worker, a
// worker killed) is tested through the troupe binary, one remote per
// process (cmd/troupe/workers_test.go): protoactor's remote.Start sets
// grpc's global logger, so two remotes in one process race.

func boards(names ...string) []*workerpb.Board {
	var bs []*workerpb.Board
	for _, n := range names {
		bs = append(bs, &workerpb.Board{Name: n, DeviceType: "sim"})
	}
	return bs
}

func ask(t *testing.T, system *actor.ActorSystem, msg interface{}) interface{} {
	t.Helper()
	res, err := system.Root.RequestFuture(actor.NewPID(system.Address(), HubName), msg, 5*time.Second).Result()
	require.NoError(t, err)
	return res
}

func TestHubRegistration(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	var logs lockedbuf.Buffer
	joined := make(chan string, 10)
	hub, err := StartHub(system, HubConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Taken: []string{"local-0"},
		Joined: func(w string, _ *actor.PID, _ []*workerpb.Board) { joined <- w }})
	require.NoError(t, err)
	defer hub.Stop()

	r := ask(t, system, &workerpb.Register{Worker: "w1", Incarnation: "1", Boards: boards("b1", "b2")}).(*workerpb.Registered)
	assert.Empty(t, r.Error)
	assert.Equal(t, DefaultHeartbeat.Milliseconds(), r.HeartbeatMs)
	assert.Equal(t, "w1", <-joined)

	for _, c := range []struct {
		name string
		reg  *workerpb.Register
		want string
	}{
		{"board of another worker", &workerpb.Register{Worker: "w2", Boards: boards("b3", "b1")}, "board b1 belongs to worker w1"},
		{"board of the server's own lab", &workerpb.Register{Worker: "w2", Boards: boards("b3", "local-0")}, "board local-0 belongs to the server's own lab"},
		{"board twice", &workerpb.Register{Worker: "w2", Boards: boards("b3", "b3")}, "board b3 listed twice"},
		{"board without a name", &workerpb.Register{Worker: "w2", Boards: boards("")}, "without a name"},
		{"bad worker name", &workerpb.Register{Worker: "../x", Boards: boards("b4")}, "worker name"},
		{"too many boards", &workerpb.Register{Worker: "w2", Boards: make([]*workerpb.Board, maxBoards+1)}, "at most"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := ask(t, system, c.reg).(*workerpb.Registered)
			assert.Contains(t, r.Error, c.want)
		})
	}
	assert.Contains(t, logs.String(), "worker registration refused")

	// The same worker registering again (a new incarnation) replaces its boards.
	r = ask(t, system, &workerpb.Register{Worker: "w1", Incarnation: "2", Boards: boards("b2")}).(*workerpb.Registered)
	assert.Empty(t, r.Error)
	assert.False(t, ask(t, system, &workerpb.Heartbeat{Worker: "w1", Incarnation: "1"}).(*workerpb.HeartbeatAck).Known, "old incarnation")
	assert.True(t, ask(t, system, &workerpb.Heartbeat{Worker: "w1", Incarnation: "2"}).(*workerpb.HeartbeatAck).Known)
	assert.False(t, ask(t, system, &workerpb.Heartbeat{Worker: "w9"}).(*workerpb.HeartbeatAck).Known)
	r = ask(t, system, &workerpb.Register{Worker: "w2", Boards: boards("b1")}).(*workerpb.Registered)
	assert.Empty(t, r.Error, "b1 was released by w1")

	ws, err := hub.Workers()
	require.NoError(t, err)
	require.Len(t, ws, 2)
	assert.Equal(t, []string{"b2"}, ws[0].Boards)
	assert.Equal(t, []string{"b1"}, ws[1].Boards)
}

func TestHubNoticesSilentWorker(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	lost := make(chan string, 10)
	hub, err := StartHub(system, HubConfig{Heartbeat: 20 * time.Millisecond, LostAfter: 200 * time.Millisecond,
		Lost: func(w string) { lost <- w }})
	require.NoError(t, err)
	defer hub.Stop()
	require.Empty(t, ask(t, system, &workerpb.Register{Worker: "w1", Incarnation: "1", Boards: boards("b1")}).(*workerpb.Registered).Error)
	require.Empty(t, ask(t, system, &workerpb.Register{Worker: "w2", Incarnation: "1", Boards: boards("b2")}).(*workerpb.Registered).Error)
	// w2 keeps beating; w1 falls silent.
	deadline := time.After(10 * time.Second)
	for {
		assert.True(t, ask(t, system, &workerpb.Heartbeat{Worker: "w2", Incarnation: "1"}).(*workerpb.HeartbeatAck).Known)
		select {
		case w := <-lost:
			assert.Equal(t, "w1", w)
			ws, err := hub.Workers()
			require.NoError(t, err)
			assert.False(t, ws[0].Connected)
			assert.True(t, ws[1].Connected)
			assert.False(t, ask(t, system, &workerpb.Heartbeat{Worker: "w1", Incarnation: "1"}).(*workerpb.HeartbeatAck).Known, "a lost worker registers again")
			return
		case <-deadline:
			t.Fatal("w1 not declared lost")
		case <-time.After(20 * time.Millisecond): // w2's heartbeat period
		}
	}
}

func TestNoTLSLoopbackOnly(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	_, err := Transport{Listen: "0.0.0.0:0", Name: labca.ServerName}.Start(system)
	assert.ErrorContains(t, err, "without --tls")
	_, err = Transport{Listen: "127.0.0.1:0", Advertise: "192.0.2.1:7000", Name: "w1"}.Start(system)
	assert.ErrorContains(t, err, "without --tls")
}

// TestHubReRegisterLoses: a connected worker that registers again has
// released its boards first: the hub tells Lost before Joined, so nothing
// that ran there is waited for or run twice.
func TestHubReRegisterLoses(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	events := make(chan string, 10)
	hub, err := StartHub(system, HubConfig{Lost: func(w string) { events <- "lost " + w },
		Joined: func(w string, pid *actor.PID, _ []*workerpb.Board) { events <- "joined " + w + " " + pid.Id }})
	require.NoError(t, err)
	defer hub.Stop()
	require.Empty(t, ask(t, system, &workerpb.Register{Worker: "w1", Incarnation: "1", Boards: boards("b1")}).(*workerpb.Registered).Error)
	assert.Equal(t, "joined w1 "+BoardsName, <-events)
	// A retry of the same registration (its answer was slow) changes nothing.
	require.Empty(t, ask(t, system, &workerpb.Register{Worker: "w1", Incarnation: "1", Boards: boards("b1")}).(*workerpb.Registered).Error)
	for _, reg := range []*workerpb.Register{
		{Worker: "w1", Incarnation: "1", Generation: 1, Boards: boards("b1")}, // it released its boards
		{Worker: "w1", Incarnation: "2", Boards: boards("b1")},                // it restarted
	} {
		require.Empty(t, ask(t, system, reg).(*workerpb.Registered).Error)
		assert.Equal(t, "lost w1", <-events)
		assert.Equal(t, "joined w1 "+BoardsName, <-events)
	}
	assert.Empty(t, events)
}
