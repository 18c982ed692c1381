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

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

func TestCommandSwitchesAndReadsStdout(t *testing.T) {
	ctx := testCtx(t)
	f := outletFile(t, "off")
	c := &Command{
		Board:        "bbb-01",
		OnCommand:    sh("echo on > " + f),
		OffCommand:   sh("echo off > " + f),
		StateCommand: []string{"cat", f},
	}
	var _ Switch = c
	assert.True(t, c.Verified())

	require.NoError(t, c.On(ctx))
	assert.Equal(t, "on", readOutlet(t, f))
	on, err := c.State(ctx)
	require.NoError(t, err)
	assert.True(t, on)

	require.NoError(t, c.Off(ctx))
	on, err = c.State(ctx)
	require.NoError(t, err)
	assert.False(t, on)
}

func TestCommandStateByExitStatus(t *testing.T) {
	ctx := testCtx(t)
	f := outletFile(t, "off")
	c := &Command{Board: "bbb-01", StateCommand: sh("grep -qx on " + f)}
	on, err := c.State(ctx)
	require.NoError(t, err)
	assert.False(t, on, "exit 1 is off")

	c.StateCommand = sh("true")
	on, err = c.State(ctx)
	require.NoError(t, err)
	assert.True(t, on, "exit 0 is on")
}

func TestCommandStateStdoutWinsOverExitStatus(t *testing.T) {
	ctx := testCtx(t)
	c := &Command{Board: "bbb-01", StateCommand: sh("echo OFF; exit 0")}
	on, err := c.State(ctx)
	require.NoError(t, err)
	assert.False(t, on)

	c.StateCommand = sh("echo ' on '; exit 1")
	on, err = c.State(ctx)
	require.NoError(t, err)
	assert.True(t, on)
}

func TestCommandStateErrors(t *testing.T) {
	ctx := testCtx(t)
	c := &Command{Board: "bbb-01", StateCommand: sh("echo maybe; exit 3")}
	_, err := c.State(ctx)
	require.Error(t, err)
	assert.Equal(t, `power state bbb-01: command [/bin/sh -c "echo maybe; exit 3"]: exit status 3 (a state command prints on/off, or exits 0 for on, 1 silently for off)`, err.Error())

	// Exit 1 with a complaint on stderr is a failure, not "off".
	c.StateCommand = sh("echo 'no such outlet' >&2; exit 1")
	_, err = c.State(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exit status 1: no such outlet")
}

func TestCommandFailureCarriesExitStatusAndStderr(t *testing.T) {
	ctx := testCtx(t)
	c := &Command{Board: "bbb-01", OnCommand: sh("echo first >&2; echo 'relay 4 stuck' >&2; exit 7")}
	err := c.On(ctx)
	require.Error(t, err)
	assert.Equal(t, `power on bbb-01: command [/bin/sh -c "echo first >&2; echo 'relay 4 stuck' >&2; exit 7"]: exit status 7: relay 4 stuck`, err.Error())
	var pe *Error
	require.True(t, errors.As(err, &pe))
	assert.Equal(t, "bbb-01", pe.Board)

	on, err := c.State(ctx)
	require.NoError(t, err)
	assert.False(t, on, "a failed On does not count as commanded")
	assert.False(t, c.Verified())
}

func TestCommandNotFoundAndNotConfigured(t *testing.T) {
	ctx := testCtx(t)
	c := &Command{Board: "bbb-01", OnCommand: []string{"/nonexistent/relay-ctl", "4"}}
	err := c.On(ctx)
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "power on bbb-01: command [/nonexistent/relay-ctl 4]: "), err.Error())

	err = c.Off(ctx)
	require.Error(t, err)
	assert.Equal(t, "power off bbb-01: no off command configured", err.Error())
}

func TestCommandTimeoutKillsTheProcessGroup(t *testing.T) {
	ctx := testCtx(t)
	// "sleep 30; true" makes the shell fork sleep, which holds the output
	// pipe: the whole group must die for On to return.
	c := &Command{Board: "bbb-01", OnCommand: sh("sleep 30; true"), Timeout: 200 * time.Millisecond}
	start := time.Now()
	err := c.On(ctx)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.Equal(t, `power on bbb-01: command [/bin/sh -c "sleep 30; true"]: timed out after 200ms`, err.Error())
}

func TestCommandContextCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	c := &Command{Board: "bbb-01", OnCommand: sh("sleep 30; true")}
	start := time.Now()
	err := c.On(ctx)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), err.Error())
	assert.True(t, strings.HasPrefix(err.Error(), "power on bbb-01: "), err.Error())
}
