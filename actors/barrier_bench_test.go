package actors

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/coordinator"
	"github.com/troupe-lab/troupe/jobs"
)

// BenchmarkBarrier measures the in-process latency of a MultiNode barrier
// through the real coordinator actor: from the moment the last member
// arrives until every member's reply channel has delivered. The other N-1
// arrivals are handled before the clock starts, so ns/op is the latency of
// one barrier release (setup is not timed), and p50-ms / p99-ms are the
// percentiles of that latency over the iterations of the final run.
//
// Goals: p99 < 5 ms at 100 members, < 50 ms at 1000 members. Use
// -benchtime=200x (or the default 1s) for meaningful percentiles.
func BenchmarkBarrier(b *testing.B) {
	for _, n := range []int{2, 10, 100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) { benchBarrier(b, n) })
	}
}

// barrierWait bounds how long one iteration waits for the coordinator.
const barrierWait = 30 * time.Second

func benchBarrier(b *testing.B, n int) {
	j, err := jobs.Parse("barrier-bench.toml", []byte(fmt.Sprintf(`name = "barrier-bench"
timeout = "5m"
[roles.r]
device_type = "sim"
count = %d
[[action]]
type = "boot"
[[action]]
type = "test"
name = "t"
run = "true"
`, n)))
	if err != nil {
		b.Fatal(err)
	}
	nodes := j.Nodes()
	if len(nodes) != n {
		b.Fatalf("job has %d nodes, want %d", len(nodes), n)
	}
	members := make([]coordinator.Member, n)
	names := make([]string, n)
	for i, nd := range nodes {
		members[i] = coordinator.Member{Name: nd.Name, Role: nd.Role}
		names[i] = nd.Name
	}
	group, err := coordinator.New(members)
	if err != nil {
		b.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	cfg := Config{Job: j, Clock: RealClock{}, Logger: logger}

	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger }))
	defer system.Shutdown()
	root := system.Root
	pid := root.Spawn(actor.PropsFromProducer(func() actor.Actor { return newCoordActor(cfg, group) }))
	defer root.Stop(pid)

	replies := make([]chan coordinator.Reply, n)
	lat := make([]time.Duration, 0, b.N)
	timeout := time.NewTimer(barrierWait)
	defer timeout.Stop()
	resetTimeout := func() {
		timeout.Stop()
		timeout.Reset(barrierWait) // Go >= 1.23: no stale value after Stop/Reset
	}
	recv := func(ch chan coordinator.Reply, what string) coordinator.Reply {
		select {
		case r := <-ch:
			return r
		case <-timeout.C:
			b.Fatalf("no reply for %s within %s", what, barrierWait)
			return coordinator.Reply{}
		}
	}

	b.ReportAllocs()
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		b.StopTimer()
		id := fmt.Sprintf("b-%d", it)
		for i := range replies {
			replies[i] = make(chan coordinator.Reply, 1)
		}
		// N-1 arrivals, then a send from node 0: its reply proves (mailbox
		// order) that every arrival before it has been handled.
		for i := 0; i < n-1; i++ {
			root.Send(pid, &mnCall{req: coordinator.Request{Node: names[i], Kind: coordinator.Sync, ID: id, Timeout: time.Minute}, reply: replies[i]})
		}
		flush := make(chan coordinator.Reply, 1)
		root.Send(pid, &mnCall{req: coordinator.Request{Node: names[0], Kind: coordinator.Send, ID: "bench-flush"}, reply: flush})
		resetTimeout()
		if r := recv(flush, "the flush send"); !r.OK {
			b.Fatalf("flush send: %+v", r)
		}
		for i := 0; i < n-1; i++ {
			select {
			case r := <-replies[i]:
				b.Fatalf("barrier %s released early for %s: %+v", id, names[i], r)
			default:
			}
		}
		resetTimeout()
		b.StartTimer()

		start := time.Now()
		root.Send(pid, &mnCall{req: coordinator.Request{Node: names[n-1], Kind: coordinator.Sync, ID: id, Timeout: time.Minute}, reply: replies[n-1]})
		for i, ch := range replies {
			r := recv(ch, names[i]+" at barrier "+id)
			if !r.OK || r.Node != names[i] || r.Kind != coordinator.Sync || r.ID != id {
				b.Fatalf("bad reply for %s at %s: %+v", names[i], id, r)
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()

	slices.Sort(lat)
	b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	if testing.Verbose() && b.N > 1 {
		b.Logf("%s: n=%d %s", b.Name(), b.N, strings.Join([]string{
			"p50=" + percentile(lat, 50).String(),
			"p99=" + percentile(lat, 99).String(),
			"max=" + lat[len(lat)-1].String(),
		}, " "))
	}
}

// percentile is the nearest-rank p-th percentile of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	if k < 1 {
		k = 1
	}
	return sorted[k-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
