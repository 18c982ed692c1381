package workers

import (
	"sync"
	"time"

	"github.com/troupe-lab/troupe/actors"
)

// Traffic records when messages of each peer last arrived on the remote:
// any message (console batches, MultiNode calls, results), not only
// heartbeats. A peer whose messages flow is alive even when its heartbeats
// are late behind them (one remote stream carries them all, and a loaded
// host delays the whole stream). The transport records (Transport.Traffic);
// the hub and the worker read.
type Traffic struct {
	clock actors.Clock

	mu   sync.Mutex
	last map[string]time.Time
}

// NewTraffic makes a record of arrivals read on clock (nil: the wall clock).
func NewTraffic(clock actors.Clock) *Traffic {
	if clock == nil {
		clock = actors.RealClock{}
	}
	return &Traffic{clock: clock, last: map[string]time.Time{}}
}

// Seen records that messages of peer arrived now.
func (t *Traffic) Seen(peer string) {
	now := t.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.last) >= maxPeers {
		if _, ok := t.last[peer]; !ok {
			return
		}
	}
	t.last[peer] = now
}

// Last is when messages of peer last arrived (zero: never). A nil Traffic
// has seen nothing.
func (t *Traffic) Last(peer string) time.Time {
	if t == nil {
		return time.Time{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last[peer]
}

// maxPeers bounds the peers a Traffic remembers (names come from
// certificates of the lab CA, or on loopback from the messages).
const maxPeers = 100000
