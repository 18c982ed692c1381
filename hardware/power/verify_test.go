package power

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testSettle = 300 * time.Millisecond

func TestVerifyLyingPDUDaemonEndsInError(t *testing.T) {
	ctx := testCtx(t)
	f := newFakePDUDaemon(t, "off")
	f.set(func(f *fakePDUDaemon) { f.lies = -1 })
	s := Verify(f.driver(true), "rpi-01", 2, testSettle)

	start := time.Now()
	err := s.On(ctx)
	require.Error(t, err)
	assert.Equal(t, "power on rpi-01: the PDU answered OK but the outlet is still off (3 tries)", err.Error())
	assert.True(t, errors.Is(err, ErrNotSwitched))
	var ns *NotSwitchedError
	require.True(t, errors.As(err, &ns))
	assert.Equal(t, 3, ns.Tries)
	assert.Equal(t, []string{"on pdu1 4", "on pdu1 4", "on pdu1 4"}, f.requests())
	assert.GreaterOrEqual(t, time.Since(start), 3*testSettle, "each try waits for the outlet to settle")
}

func TestVerifyLyingOffAndNoRetries(t *testing.T) {
	ctx := testCtx(t)
	f := newFakePDUDaemon(t, "on")
	f.set(func(f *fakePDUDaemon) { f.lies = -1 })
	s := Verify(f.driver(true), "rpi-01", -1, testSettle)
	err := s.Off(ctx)
	require.Error(t, err)
	assert.Equal(t, "power off rpi-01: the PDU answered OK but the outlet is still on (1 tries)", err.Error())
	assert.Len(t, f.requests(), 1)
}

func TestVerifySecondTryWorks(t *testing.T) {
	ctx := testCtx(t)
	f := newFakePDUDaemon(t, "off")
	f.set(func(f *fakePDUDaemon) { f.lies = 1 })
	s := Verify(f.driver(true), "rpi-01", 2, testSettle)
	require.NoError(t, s.On(ctx))
	assert.Equal(t, []string{"on pdu1 4", "on pdu1 4"}, f.requests())
	on, err := s.State(ctx)
	require.NoError(t, err)
	assert.True(t, on)
	assert.Equal(t, "on", readOutlet(t, f.file))
}

func TestVerifyWaitsForASlowOutlet(t *testing.T) {
	ctx := testCtx(t)
	f := newFakePDUDaemon(t, "off")
	f.set(func(f *fakePDUDaemon) { f.delay = 250 * time.Millisecond })
	s := Verify(f.driver(true), "rpi-01", 2, time.Second)
	require.NoError(t, s.On(ctx))
	assert.Len(t, f.requests(), 1, "the outlet switched within settle: no retry")
}

func TestVerifyDoesNotRetryAFailedCommand(t *testing.T) {
	ctx := testCtx(t)
	f := newFakePDUDaemon(t, "off")
	f.set(func(f *fakePDUDaemon) { f.fail = true })
	s := Verify(f.driver(true), "rpi-01", 2, testSettle)
	err := s.On(ctx)
	require.Error(t, err)
	assert.Equal(t, "power on rpi-01: pdudaemon "+f.srv.URL+": 500 Internal Server Error: outlet error", err.Error())
	assert.Len(t, f.requests(), 1)
}

func TestVerifyReadBackError(t *testing.T) {
	ctx := testCtx(t)
	f := outletFile(t, "off")
	c := &Command{Board: "bbb-01", OnCommand: sh("echo on > " + f), StateCommand: sh("exit 4")}
	err := Verify(c, "bbb-01", 0, 0).On(ctx)
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "power on bbb-01: read the outlet back: power state bbb-01: command "), err.Error())
	assert.Contains(t, err.Error(), "exit status 4")
}

func TestVerifyUnverifiableSwitchSendsOnce(t *testing.T) {
	ctx := testCtx(t)
	f := newFakePDUDaemon(t, "off")
	f.set(func(f *fakePDUDaemon) { f.lies = -1 })
	s := Verify(f.driver(false), "rpi-01", 2, testSettle)
	assert.False(t, s.(Verifiable).Verified())
	require.NoError(t, s.On(ctx), "nothing to check against")
	assert.Len(t, f.requests(), 1)
}

func TestVerifyContextEndsTheWait(t *testing.T) {
	f := newFakePDUDaemon(t, "off")
	f.set(func(f *fakePDUDaemon) { f.lies = -1 })
	s := Verify(f.driver(true), "rpi-01", 2, 10*time.Second)
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.On(ctx)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), err.Error())
	assert.True(t, strings.HasPrefix(err.Error(), "power on rpi-01: "), err.Error())
}

// bare is a switch whose errors do not name a board; Verify adds it.
type bare struct{}

func (bare) On(context.Context) error            { return errors.New("relay jammed") }
func (bare) Off(context.Context) error           { return nil }
func (bare) State(context.Context) (bool, error) { return false, nil }

func TestVerifyNamesTheBoard(t *testing.T) {
	err := Verify(bare{}, "imx-07", 0, 0).On(testCtx(t))
	require.Error(t, err)
	assert.Equal(t, "power on imx-07: relay jammed", err.Error())
	require.NoError(t, Verify(bare{}, "imx-07", 0, 0).Off(testCtx(t)))
}
