package sim

import (
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProcTableShared: power-offs running at once share scans of /proc
// (one per board was O(boards × processes) at 10×100), yet each gets a
// scan that started after it asked (it sees what it killed before).
func TestProcTableShared(t *testing.T) {
	var scans atomic.Int64
	release := make(chan struct{})
	first := make(chan struct{})
	var once sync.Once
	tbl := newProcTable(func() []procInfo {
		n := scans.Add(1)
		if n == 1 {
			once.Do(func() { close(first) })
			<-release // the first scan is slow: callers pile up behind it
		}
		return []procInfo{{pid: int(n)}}
	}, func(int) ([]byte, error) { return nil, os.ErrNotExist }, 0)

	got := make(chan int, 101)
	go func() { got <- tbl.list()[0].pid }()
	<-first
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() { got <- tbl.list()[0].pid })
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		tbl.mu.Lock()
		n := tbl.waiting
		tbl.mu.Unlock()
		if n == 100 {
			break
		}
		require.True(t, time.Now().Before(deadline), "callers not waiting")
		time.Sleep(time.Millisecond) // a deadline poll
	}
	close(release)
	wg.Wait()
	assert.Equal(t, 1, <-got, "the first caller gets the scan it started")
	for range 100 {
		// They asked while scan 1 ran: scan 1 may have missed their kills.
		assert.Equal(t, 2, <-got, "a caller gets a scan started after it asked")
	}
	assert.Equal(t, int64(2), scans.Load(), "101 callers, 2 scans")
}

// TestProcTableToken: a process's token is read once; a pid reused (other
// start time) is read again; the tokens of processes gone are dropped.
func TestProcTableToken(t *testing.T) {
	reads := map[int]int{}
	var mu sync.Mutex
	live := []procInfo{{pid: 10, start: 1}, {pid: 11, start: 1}}
	tbl := newProcTable(func() []procInfo { return live }, func(pid int) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		reads[pid]++
		switch pid {
		case 10:
			return []byte("A=1\x00" + tokenVar + "=abc\x00B=2\x00"), nil
		case 11:
			return nil, os.ErrPermission
		}
		return nil, os.ErrNotExist
	}, 0)
	for range 3 {
		assert.Equal(t, "abc", tbl.token(procInfo{pid: 10, start: 1}))
		assert.Equal(t, "", tbl.token(procInfo{pid: 11, start: 1}), "not ours to read: not ours")
		assert.Equal(t, "", tbl.token(procInfo{pid: 12, start: 1}), "gone")
	}
	assert.Equal(t, map[int]int{10: 1, 11: 1, 12: 3}, reads)
	assert.Equal(t, "abc", tbl.token(procInfo{pid: 10, start: 2}), "pid reused")
	assert.Equal(t, 2, reads[10])

	for i := range 10 {
		tbl.token(procInfo{pid: 100 + i, start: 1})
	}
	live = []procInfo{{pid: 10, start: 2}}
	require.NotEmpty(t, tbl.list())
	assert.Len(t, tbl.tokens, 1, "tokens of processes gone are forgotten")
}
