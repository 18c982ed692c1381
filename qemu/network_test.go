package qemu

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// guestEnd is what QEMU gets of a port, as a conn with deadlines.
func guestEnd(t *testing.T, p *port) net.Conn {
	t.Helper()
	c, err := net.FileConn(p.guest)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// recv reads one frame from a guest's end of its port, or "" after a while.
func recv(t *testing.T, c net.Conn, wait time.Duration) string {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// join plugs a port into group's network, unplugged when the test ends.
func join(t *testing.T, ns *Networks, group string) (*port, net.Conn, int) {
	t.Helper()
	p, subnet, err := ns.join(group)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p, guestEnd(t, p), subnet
}

// TestNetworksIsolateGroups: a frame a guest sends reaches every other
// board of its group and no board of another group; each group has a
// subnet of its own, freed when its last board leaves.
func TestNetworksIsolateGroups(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	ns := NewNetworks(nil)
	a1, c1, subA := join(t, ns, "group-a")
	a2, c2, subA2 := join(t, ns, "group-a")
	a3, c3, _ := join(t, ns, "group-a")
	b1, cb, subB := join(t, ns, "group-b")
	assert.Equal(t, subA, subA2)
	assert.NotEqual(t, subA, subB)

	_, err := c1.Write([]byte("frame from a1"))
	require.NoError(t, err)
	assert.Equal(t, "frame from a1", recv(t, c2, 2*time.Second))
	assert.Equal(t, "frame from a1", recv(t, c3, 2*time.Second))
	assert.Equal(t, "", recv(t, cb, 200*time.Millisecond), "another group's board hears nothing")
	assert.Equal(t, "", recv(t, c1, 50*time.Millisecond), "a frame does not come back to its sender")

	_, err = cb.Write([]byte("frame from b1"))
	require.NoError(t, err)
	assert.Equal(t, "", recv(t, c2, 200*time.Millisecond))

	for _, p := range []*port{a1, a2, a3, b1} {
		require.NoError(t, p.Close())
		require.NoError(t, p.Close(), "closing twice is fine")
	}
	ns.mu.Lock()
	assert.Empty(t, ns.hubs)
	assert.Empty(t, ns.used)
	ns.mu.Unlock()
}

// TestHubDropsForSilentGuest: a guest that never reads (powered off) does
// not hold up the others.
func TestHubDropsForSilentGuest(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	ns := NewNetworks(nil)
	_, sender, _ := join(t, ns, "g")
	join(t, ns, "g") // never reads
	_, live, _ := join(t, ns, "g")
	start := time.Now()
	for i := range 2 * queueLen {
		_, err := sender.Write([]byte{byte(i)})
		require.NoError(t, err)
		if got := recv(t, live, 2*time.Second); !assert.Equal(t, string([]byte{byte(i)}), got, "frame %d", i) {
			return
		}
	}
	assert.Less(t, time.Since(start), 5*time.Second)
}
