package coordinator_test

import (
	"fmt"
	"testing"
	"time"

	c "github.com/troupe-lab/troupe/coordinator"
)

func nodeName(i int) string { return fmt.Sprintf("node-%04d", i) }

// BenchmarkSync measures one full barrier: every member arrives, the last
// arrival releases all of them. ns/op is ns per barrier.
func BenchmarkSync(b *testing.B) {
	for _, n := range []int{2, 10, 100, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			ms := make([]c.Member, n)
			reqs := make([]c.Request, n)
			for i := range ms {
				ms[i] = c.Member{Name: nodeName(i), Role: "r"}
			}
			g, err := c.New(ms)
			if err != nil {
				b.Fatal(err)
			}
			ids := make([]string, b.N)
			for i := range ids {
				ids[i] = fmt.Sprintf("barrier-%d", i)
			}
			b.ResetTimer()
			for it := 0; it < b.N; it++ {
				for i := range reqs {
					reqs[i] = c.Request{Node: ms[i].Name, Kind: c.Sync, ID: ids[it], Timeout: time.Minute}
				}
				var out []c.Reply
				for i := range reqs {
					out, err = g.Handle(t0, reqs[i])
					if err != nil {
						b.Fatal(err)
					}
				}
				if len(out) != n {
					b.Fatalf("released %d of %d", len(out), n)
				}
			}
		})
	}
}
