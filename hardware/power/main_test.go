package power

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/troupe-lab/troupe/boot"
	"go.uber.org/goleak"
)

// Every Switch is a boot.Power.
var _ boot.Power = Switch(nil)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testCtx is bounded so that no test waits forever.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// outletFile is a temp file holding "on"/"off", the state a fake PDU
// writes and a StateCommand reads.
func outletFile(t *testing.T, state string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "outlet")
	require.NoError(t, os.WriteFile(f, []byte(state+"\n"), 0o644))
	return f
}

func readOutlet(t *testing.T, f string) string {
	t.Helper()
	b, err := os.ReadFile(f)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

// recv waits for one value on ch, failing the test after d.
func recv[T any](t *testing.T, ch <-chan T, d time.Duration) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("nothing after %s", d)
	}
	var zero T
	return zero
}
