package server_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkStreamLatency measures how long a console line takes to reach
// the WebSocket followers of its job: for every "line N" frame, its receive
// time minus its time field (when the harness logged the line, as its
// bytes came off the console). Each iteration is one job on a lab of 20 sim
// boards printing 1000 lines (10 every 10 ms) to 50 followers, while 10
// submitters keep small jobs running on the other boards (each submits
// a job and waits for its end). Reports the
// p50, p99 and max latency over every frame of every follower. The
// sub-benchmarks without load or with one follower tell where the time
// goes.
//
//	go test -run '^$' -bench StreamLatency -benchtime 1x ./server
func BenchmarkStreamLatency(b *testing.B) {
	for _, c := range []struct {
		followers, submitters int
	}{{50, loadSubmitters}, {50, 0}, {1, loadSubmitters}, {1, 0}} {
		b.Run(fmt.Sprintf("followers=%d/submitters=%d", c.followers, c.submitters), func(b *testing.B) {
			benchStream(b, c.followers, c.submitters)
		})
	}
}

func benchStream(b *testing.B, nFollowers, submitters int) {
	const lines = 1000
	base := startServer(b, loadBoards)

	// The load: 10 submitters, each with one small job at a time.
	ctx, cancel := context.WithCancel(b.Context())
	var load sync.WaitGroup
	defer func() {
		cancel()
		load.Wait()
		loadClient.CloseIdleConnections()
	}()
	var loadMu sync.Mutex
	var loadErr error
	loadJobs := 0
	for s := range submitters {
		load.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				err := runSmallJob(ctx, base, fmt.Sprintf("bg-%d-%d", s, i))
				loadMu.Lock()
				if err != nil && ctx.Err() == nil && loadErr == nil {
					loadErr = err
				}
				if err == nil {
					loadJobs++
				}
				loadMu.Unlock()
			}
		})
	}

	var mu sync.Mutex
	var lat []time.Duration
	onLine := func(f frame, recv time.Time) {
		mu.Lock()
		lat = append(lat, recv.Sub(f.Time))
		mu.Unlock()
	}
	dir := b.TempDir()
	iter := 0
	for b.Loop() {
		iter++
		goFile := filepath.Join(dir, fmt.Sprintf("go-%d", iter))
		id, err := post(base, printingJob(fmt.Sprintf("latency-%d", iter), goFile, lines, 10, "0.01"))
		if err != nil {
			b.Fatal(err)
		}
		fctx, fcancel := context.WithTimeout(ctx, 3*time.Minute)
		outs, errs := followers(fctx, base, id, nFollowers, goFile, onLine)()
		fcancel()
		for i, o := range outs {
			if errs[i] != nil {
				b.Fatalf("follower %d: %v", i, errs[i])
			}
			if err := checkLines(o.lines, lines); err != nil {
				b.Fatalf("follower %d: %v", i, err)
			}
			if o.end != "complete" {
				b.Fatalf("follower %d: end %q", i, o.end)
			}
		}
	}
	b.StopTimer()
	loadMu.Lock()
	if loadErr != nil {
		b.Fatalf("load: %v", loadErr)
	}
	b.Logf("%d background jobs ran meanwhile", loadJobs)
	loadMu.Unlock()

	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(ms(pct(0.50)), "p50-ms")
	b.ReportMetric(ms(pct(0.99)), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(float64(len(lat))/float64(b.N), "frames/op")
}

// runSmallJob submits a small job and waits until it ended.
func runSmallJob(ctx context.Context, base, name string) error {
	id, err := post(base, smallJob(name, name))
	if err != nil {
		return err
	}
	for {
		var j struct{ Status string }
		if err := getJSON(base+"/api/v1/jobs/"+id, &j); err != nil {
			return err
		}
		switch j.Status {
		case "queued", "running":
		case "complete":
			return nil
		default:
			return fmt.Errorf("job %s (%s): %s", id, name, j.Status)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
