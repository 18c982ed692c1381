package store

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
)

// blockCommitter makes the committer's next transaction wait until the
// returned func is called; it returns once that transaction has begun.
func blockCommitter(t *testing.T, s *Store) (release func(), done <-chan error) {
	t.Helper()
	began, gate := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- s.update(func(*bolt.Tx) error {
			select {
			case <-began:
			default:
				close(began)
			}
			select {
			case <-gate:
			case <-time.After(time.Minute):
			}
			return nil
		})
	}()
	select {
	case <-began:
	case <-time.After(30 * time.Second):
		t.Fatal("the committer did not begin")
	}
	return func() { close(gate) }, errc
}

// waitPending polls until n writes wait for the committer.
func waitPending(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.mu.Lock()
		got := len(s.pending)
		s.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes pending, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWritesWaitingShareOneCommit: the submissions that arrive while a
// commit is under way are committed together, in one transaction (one
// fsync), and each returns only once that transaction is committed: all
// are there after a reopen, with distinct IDs.
func TestWritesWaitingShareOneCommit(t *testing.T) {
	defer goleak.VerifyNone(t)
	path := filepath.Join(t.TempDir(), "troupe.db")
	s, err := Open(path)
	require.NoError(t, err)
	release, blocked := blockCommitter(t, s)
	before := s.commits.Load()

	const n = 50
	var wg sync.WaitGroup
	errs := make([]error, n)
	jobs := make([]*Job, n)
	for i := range n {
		jobs[i] = &Job{Name: fmt.Sprintf("j%d", i), Status: StatusQueued}
		wg.Go(func() { _, errs[i] = s.Add(jobs[i], nil) })
	}
	waitPending(t, s, n)
	release()
	wg.Wait()
	require.NoError(t, <-blocked)
	for _, err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, int64(2), s.commits.Load()-before, "the blocking write, then the 50 waiting ones at once")
	require.NoError(t, s.Close())

	s, err = Open(path)
	require.NoError(t, err)
	defer s.Close()
	got, err := s.Jobs()
	require.NoError(t, err)
	require.Len(t, got, n)
	ids := map[string]bool{}
	for _, j := range got {
		ids[j.ID] = true
	}
	assert.Len(t, ids, n, "distinct IDs")
}

// TestFailedWriteLeavesItsBatch: a write that fails in a shared
// transaction gets its error; the others of the transaction are
// committed without it.
func TestFailedWriteLeavesItsBatch(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "troupe.db"))
	require.NoError(t, err)
	defer s.Close()
	release, blocked := blockCommitter(t, s)
	var wg sync.WaitGroup
	var goodErr, badErr error
	good := &Job{Name: "good", Status: StatusQueued}
	wg.Go(func() { _, goodErr = s.Add(good, nil) })
	waitPending(t, s, 1)
	wg.Go(func() { badErr = s.Put(&Job{ID: "not-an-id"}) })
	waitPending(t, s, 2)
	release()
	wg.Wait()
	require.NoError(t, <-blocked)
	require.NoError(t, goodErr)
	require.ErrorContains(t, badErr, "not a job id")
	got, err := s.Jobs()
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "good", got[0].Name)
}

// TestBatchCommitsAll: a Batch's writes are stored together; a write
// after Close is refused, not lost silently.
func TestBatchCommitsAll(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "troupe.db"))
	require.NoError(t, err)
	j := &Job{Name: "j", Status: StatusQueued}
	_, err = s.Add(j, nil)
	require.NoError(t, err)
	var b Batch
	j2 := *j
	j2.Status = StatusRunning
	b.Put(&j2)
	j3 := j2
	j3.Status = "complete"
	b.Put(&j3)
	b.SetHealth("b0", "bad")
	require.NoError(t, s.Commit(&b))
	got, err := s.Jobs()
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "complete", got[0].Status, "the later Put wins")
	h, err := s.Health()
	require.NoError(t, err)
	assert.Equal(t, "bad", h["b0"])
	require.NoError(t, s.Close())
	require.ErrorIs(t, s.Put(&j3), ErrClosed)
}
