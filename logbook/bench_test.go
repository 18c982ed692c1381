package logbook

import (
	"fmt"
	"sync"
	"testing"
)

// BenchmarkLine: lines/s into one book from N writers (a job's boards),
// group.log on disk.
func BenchmarkLine(b *testing.B) {
	for _, writers := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			book, err := New(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			text := "[    1.234567] virtio_net virtio0 eth0: renamed from a board's console"
			b.ResetTimer()
			var wg sync.WaitGroup
			per := b.N / writers
			for w := range writers {
				n := per
				if w == 0 {
					n += b.N % writers
				}
				node := fmt.Sprintf("node-%d", w)
				wg.Go(func() {
					for range n {
						book.Line(node, text)
					}
				})
			}
			wg.Wait()
			if err := book.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}
