package server

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/store"
)

// TestLaterNeverBlocksUnderTheLock queues more store writes than any
// fixed queue would hold while the worker is busy, each write taking the
// server's lock as the lab's callbacks do (one dropHopeless over a long
// queue does this). A sender that held the lock on a full queue would
// deadlock with the worker.
func TestLaterNeverBlocksUnderTheLock(t *testing.T) {
	x := start(t, t.TempDir(), simLab(t, 1, 1), nil)
	const n = 10000
	queued := make(chan struct{})
	ran := make(chan struct{}, n)
	x.later(task{write: func(*store.Batch) {
		select { // the worker is busy until every write is queued
		case <-queued:
		case <-time.After(30 * time.Second):
		}
	}})
	go func() {
		for range n {
			x.later(task{write: func(*store.Batch) {}, after: func(error) {
				x.mu.Lock()
				_ = len(x.jobs)
				x.mu.Unlock()
				ran <- struct{}{}
			}})
		}
		close(queued)
	}()
	select {
	case <-queued:
	case <-time.After(10 * time.Second):
		t.Fatal("later blocked: the queue is full while the worker waits for the lock")
	}
	deadline := time.After(30 * time.Second)
	for range n {
		select {
		case <-ran:
		case <-deadline:
			t.Fatal("the worker did not run every queued write")
		}
	}
	require.Empty(t, ran)
}
