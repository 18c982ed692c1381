package sim

import (
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func threads(t *testing.T) int {
	t.Helper()
	ts, err := os.ReadDir("/proc/self/task")
	require.NoError(t, err)
	return len(ts)
}

// TestAwaitExitHoldsNoThread: goroutines waiting for 40 children to end
// do not hold a thread each (they would, blocked in wait(2)), and each
// returns once its child has exited, which Wait then reaps.
func TestAwaitExitHoldsNoThread(t *testing.T) {
	const n = 40
	var cmds []*exec.Cmd
	for range n {
		cmd := exec.Command("sleep", "60")
		require.NoError(t, cmd.Start())
		cmds = append(cmds, cmd)
	}
	t.Cleanup(func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
		}
	})
	before := threads(t)
	var wg sync.WaitGroup
	codes := make(chan error, n)
	for _, c := range cmds {
		wg.Go(func() {
			awaitExit(c.Process)
			codes <- c.Wait()
		})
	}
	// Blocked in wait(2), the waiters would need n threads within moments.
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) && threads(t)-before < n {
		time.Sleep(10 * time.Millisecond) // deadline poll: must not happen
	}
	assert.Less(t, threads(t)-before, n/2, "waiting for children holds threads")
	for _, c := range cmds {
		require.NoError(t, c.Process.Kill())
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitTO):
		t.Fatal("waiters did not return after their children were killed")
	}
	close(codes)
	for err := range codes {
		assert.ErrorContains(t, err, "signal: killed")
	}
}
