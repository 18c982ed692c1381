package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// simJob is a job of the simulation with its actual run time.
type simJob struct {
	Job
	run time.Duration // ≤ Timeout
}

type simRun struct {
	Running
	end time.Time // actual
}

type simResult struct {
	bigStart      time.Duration // after its submission; -1: never within the horizon
	headAt        time.Duration // when it first became the head, after its submission
	smallDuring   int           // small jobs started while the big one waited
	backfilled    int           // of them, on boards reserved for the big one
	smallStarted  int
	maxBigPredict time.Duration // latest predicted start of the big job, after its submission
}

const (
	simBoards  = 16
	bigAt      = 10 * time.Second
	maxTimeout = 20 * time.Second
	horizon    = 400 * time.Second
)

// simulate runs a discrete-event simulation on a 16-board lab: 1-node jobs
// arriving about every second (exponential gaps), running 1..20 s, and a
// 16-node job submitted at 10 s with priority bigPrio. Small jobs time out
// after 20 s, or, with randomTimeouts, after a random time between their run
// time and 20 s. Plan (or plan without reservation) is called at every event
// and its decision applied; every decision is checked.
func simulate(t *testing.T, seed uint64, bigPrio int, randomTimeouts, reserve bool) simResult {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	var arrivals []simJob
	for at, i := time.Duration(0), 0; at < horizon; i++ {
		at += time.Duration(r.ExpFloat64() * float64(time.Second)).Round(time.Millisecond)
		run := time.Duration(1+r.IntN(20)) * time.Second
		to := maxTimeout
		if randomTimeouts {
			to = run + time.Duration(r.Int64N(int64(maxTimeout-run)+1))
		}
		arrivals = append(arrivals, simJob{Job{ID: fmt.Sprintf("s%04d", i), Priority: 50, Submitted: t0.Add(at), Timeout: to,
			Roles: []Role{{Name: "n", DeviceType: "sim", Count: 1}}}, run})
	}
	big := simJob{Job{ID: "big", Priority: bigPrio, Submitted: t0.Add(bigAt), Timeout: maxTimeout,
		Roles: []Role{{Name: "n", DeviceType: "sim", Count: simBoards}}}, maxTimeout}
	arrivals = append(arrivals, big)
	// Keep arrivals sorted by time (big inserted in place).
	for i := len(arrivals) - 1; i > 0 && arrivals[i].Submitted.Before(arrivals[i-1].Submitted); i-- {
		arrivals[i], arrivals[i-1] = arrivals[i-1], arrivals[i]
	}

	s := State{Boards: sims(simBoards)}
	runs := map[string]simJob{}
	var running []simRun
	res := simResult{bigStart: -1, headAt: -1}
	now := t0
	for next := 0; now.Before(t0.Add(horizon)); {
		// Next event: an arrival or the end of a running job.
		ev := t0.Add(horizon)
		if next < len(arrivals) && arrivals[next].Submitted.Before(ev) {
			ev = arrivals[next].Submitted
		}
		for _, rn := range running {
			if rn.end.Before(ev) {
				ev = rn.end
			}
		}
		now = ev
		for next < len(arrivals) && !arrivals[next].Submitted.After(now) {
			s.Queue = append(s.Queue, arrivals[next].Job)
			runs[arrivals[next].ID] = arrivals[next]
			next++
		}
		kept := running[:0]
		for _, rn := range running {
			if rn.end.After(now) {
				kept = append(kept, rn)
			}
		}
		running = kept
		s.Now = now
		s.Running = s.Running[:0]
		for _, rn := range running {
			s.Running = append(s.Running, rn.Running)
		}
		d := plan(s, options{noReserve: !reserve})
		checkDecision(t, s, d)
		bigWaiting := false
		if e, ok := d.Explain["big"]; ok {
			bigWaiting = true
			if e.Head {
				if res.headAt < 0 {
					res.headAt = now.Sub(big.Submitted)
				}
				res.maxBigPredict = max(res.maxBigPredict, e.PredictedStart.Sub(big.Submitted))
			}
		}
		for _, st := range d.Start {
			j := runs[st.JobID]
			var boards []string
			onReserved := false
			for _, b := range st.Boards {
				boards = append(boards, b)
				if d.Reserved[b] == "big" {
					onReserved = true
					// Backfill on a reserved board ends by the big job's predicted start.
					require.False(t, now.Add(j.Timeout).After(d.Explain["big"].PredictedStart), "seed %d: %s backfilled too long", seed, j.ID)
				}
			}
			running = append(running, simRun{Running{JobID: j.ID, Boards: boards, Started: now, Timeout: j.Timeout}, now.Add(j.run)})
			if j.ID == "big" {
				res.bigStart = now.Sub(big.Submitted)
				continue
			}
			res.smallStarted++
			if bigWaiting {
				res.smallDuring++
				if onReserved {
					res.backfilled++
				}
			}
		}
		started := map[string]bool{}
		for _, st := range d.Start {
			started[st.JobID] = true
		}
		q := s.Queue[:0]
		for _, j := range s.Queue {
			if !started[j.ID] {
				q = append(q, j)
			}
		}
		s.Queue = q
	}
	return res
}

var simSeeds = []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

func TestNoStarvation(t *testing.T) {
	t.Run("big job first in queue: starts within the max timeout of its submission", func(t *testing.T) {
		for _, seed := range simSeeds {
			res := simulate(t, seed, 60, false, true)
			require.GreaterOrEqual(t, res.bigStart, time.Duration(0), "seed %d: big job never started", seed)
			assert.LessOrEqual(t, res.bigStart, maxTimeout, "seed %d", seed)
			assert.LessOrEqual(t, res.maxBigPredict, maxTimeout, "seed %d: prediction never moves past the bound", seed)
			assert.Greater(t, res.smallStarted, 100, "seed %d: small jobs ran before and after", seed)
			t.Logf("seed %2d: big job started after %v; %d small jobs started in all", seed, res.bigStart, res.smallStarted)
		}
	})
	t.Run("same priority: starts within the max timeout of becoming the head", func(t *testing.T) {
		for _, seed := range simSeeds {
			res := simulate(t, seed, 50, false, true)
			require.GreaterOrEqual(t, res.bigStart, time.Duration(0), "seed %d: big job never started", seed)
			require.GreaterOrEqual(t, res.headAt, time.Duration(0), "seed %d", seed)
			assert.LessOrEqual(t, res.bigStart, res.headAt+maxTimeout, "seed %d", seed)
			t.Logf("seed %2d: head after %v, started after %v; %d small jobs started meanwhile", seed, res.headAt, res.bigStart, res.smallDuring)
		}
	})
	t.Run("random timeouts: small jobs backfill while the big job waits, without delaying it", func(t *testing.T) {
		total := 0
		for _, seed := range simSeeds {
			res := simulate(t, seed, 60, true, true)
			total += res.backfilled
			require.GreaterOrEqual(t, res.bigStart, time.Duration(0), "seed %d: big job never started", seed)
			assert.LessOrEqual(t, res.bigStart, maxTimeout, "seed %d", seed)
			t.Logf("seed %2d: big job started after %v; %d small jobs started meanwhile, %d on reserved boards", seed, res.bigStart, res.smallDuring, res.backfilled)
		}
		// Not every seed has a short enough job arriving during the wait.
		assert.Greater(t, total, len(simSeeds), "small jobs backfilled on reserved boards")
	})
	t.Run("without the reservation the big job starves", func(t *testing.T) {
		starved := 0
		for _, seed := range simSeeds {
			res := simulate(t, seed, 60, false, false)
			assert.Positive(t, res.smallDuring, "seed %d: small jobs overtake it", seed)
			if res.bigStart < 0 || res.bigStart > maxTimeout {
				starved++
			}
			when := res.bigStart.String()
			if res.bigStart < 0 {
				when = "never (within " + (horizon - bigAt).String() + ")"
			}
			t.Logf("seed %2d: big job started: %s; %d small jobs started meanwhile", seed, when, res.smallDuring)
		}
		assert.Equal(t, len(simSeeds), starved, "the big job misses the bound for every seed")
	})
}
