package workers

import (
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/workers/workerpb"
)

// BenchmarkHubRegister100Boards: one registration of a worker with 100
// boards, the hub's cost per worker joining.
func BenchmarkHubRegister100Boards(b *testing.B) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	hub, err := StartHub(system, HubConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer hub.Stop()
	pid := actor.NewPID(system.Address(), HubName)
	bs := make([]*workerpb.Board, 100)
	for i := range bs {
		bs[i] = &workerpb.Board{Name: fmt.Sprintf("b%d", i), DeviceType: "sim"}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := system.Root.RequestFuture(pid, &workerpb.Register{Worker: "w1", Incarnation: fmt.Sprint(i), Boards: bs}, 10*time.Second).Result()
		if err != nil || res.(*workerpb.Registered).Error != "" {
			b.Fatal(err, res)
		}
	}
}

// BenchmarkHubHeartbeats: heartbeats of 1000 workers in flight at once;
// ns/op is the hub's cost of one heartbeat.
func BenchmarkHubHeartbeats(b *testing.B) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	hub, err := StartHub(system, HubConfig{LostAfter: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer hub.Stop()
	pid := actor.NewPID(system.Address(), HubName)
	const workers = 1000
	for w := 0; w < workers; w++ {
		_, err := system.Root.RequestFuture(pid, &workerpb.Register{Worker: fmt.Sprintf("w%d", w), Incarnation: "1",
			Boards: []*workerpb.Board{{Name: fmt.Sprintf("b%d", w)}}}, 10*time.Second).Result()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	futures := make([]*actor.Future, 0, workers)
	for i := 0; i < b.N; i++ {
		futures = append(futures, system.Root.RequestFuture(pid, &workerpb.Heartbeat{Worker: fmt.Sprintf("w%d", i%workers), Incarnation: "1"}, 30*time.Second))
		if len(futures) == workers || i == b.N-1 {
			for _, f := range futures {
				if res, err := f.Result(); err != nil || !res.(*workerpb.HeartbeatAck).Known {
					b.Fatal(err, res)
				}
			}
			futures = futures[:0]
		}
	}
}
