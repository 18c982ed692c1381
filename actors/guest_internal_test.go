package actors

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestSessionConsole: a guest's console carries nothing until a session
// is attached (reads wait, writes fail), then the session's bytes; Close
// ends a waiting read and the session.
func TestSessionConsole(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := newSessionConsole()
	_, err := c.Write([]byte("x"))
	require.Error(t, err)

	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 16)
		n, _ := c.Read(buf)
		got <- string(buf[:n])
	}()
	board, harness := net.Pipe()
	require.NoError(t, c.attach(harness))
	go func() { _, _ = board.Write([]byte("hello")) }()
	select {
	case s := <-got:
		assert.Equal(t, "hello", s)
	case <-time.After(5 * time.Second):
		t.Fatal("the read did not get the session's bytes")
	}
	other1, other2 := net.Pipe()
	defer other2.Close()
	assert.Error(t, c.attach(other1), "one session per console")

	require.NoError(t, c.Close())
	_, err = board.Write([]byte("x"))
	assert.Error(t, err, "closing the console ends the session")
	assert.True(t, c.ended())

	// A console closed before any session: a waiting read ends.
	c2 := newSessionConsole()
	done := make(chan error, 1)
	go func() {
		_, err := c2.Read(make([]byte, 1))
		done <- err
	}()
	require.NoError(t, c2.Close())
	select {
	case err := <-done:
		assert.ErrorIs(t, err, io.EOF)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the read")
	}
}

// sessionless is a host board that opens no sessions.
type sessionless struct{ Backend }

// TestGuestBoard: a guest's boot fails clearly without its host's board,
// with a host board that opens no sessions or is on a worker; it deploys
// nothing; before a session it is off; Off never fails.
func TestGuestBoard(t *testing.T) {
	ctx := context.Background()
	hosts := &hostBoards{}
	g := newGuestBoard("host-0", hosts)
	on, err := g.State(ctx)
	require.NoError(t, err)
	assert.False(t, on)
	assert.NoError(t, g.Deploy(ctx, ""))
	assert.ErrorContains(t, g.Deploy(ctx, "rootfs.tar"), "a guest logs in to its host's board: it has no image to deploy")

	assert.ErrorContains(t, g.BootSession(ctx, ""), "host node host-0 has no board in this process to log in to")
	hosts.set("host-0", sessionless{})
	err = g.BootSession(ctx, "")
	assert.ErrorIs(t, err, ErrNoSessions)
	assert.ErrorContains(t, err, "the board of host node host-0 cannot host ssh guests")
	hosts.setRemote("host-0")
	err = g.BootSession(ctx, "")
	assert.ErrorIs(t, err, ErrNoSessions)
	assert.ErrorContains(t, err, "is on a worker")

	assert.NoError(t, g.Off(ctx))
	assert.NoError(t, g.Close())
	assert.Error(t, g.BootSession(ctx, ""), "closed")
}

// TestHostBoardsIdle: a host's guests are counted; idle closes when the
// last one ends, and each guest counts once.
func TestHostBoardsIdle(t *testing.T) {
	h := &hostBoards{}
	assert.Nil(t, h.idle("host-0"), "no guests")
	h.expect("host-0")
	h.expect("host-0")
	idle := h.idle("host-0")
	require.NotNil(t, idle)
	h.guestEnded("host-0")
	select {
	case <-idle:
		t.Fatal("idle with a guest running")
	default:
	}
	h.guestEnded("host-0")
	<-idle
	h.guestEnded("host-0") // no panic: closed once
	assert.Nil(t, h.idle("host-0"))
}
