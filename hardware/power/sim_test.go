package power

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lineServer answers each command line on a unix socket with reply(cmd).
func lineServer(t *testing.T, reply func(string) string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "power.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sc := bufio.NewScanner(c)
			if sc.Scan() {
				fmt.Fprintln(c, reply(sc.Text()))
			}
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return sock
}

func TestSim(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	on := false
	sock := lineServer(t, func(cmd string) string {
		switch cmd {
		case "on":
			on = true
			return "ok"
		case "off":
			on = false
			return "ok"
		case "status":
			return map[bool]string{true: "on", false: "off"}[on]
		}
		return "error: unknown command"
	})
	s := &Sim{Board: "sb-1", Socket: sock}
	require.NoError(t, s.On(ctx))
	got, err := s.State(ctx)
	require.NoError(t, err)
	assert.True(t, got)
	require.NoError(t, s.Off(ctx))
	got, err = s.State(ctx)
	require.NoError(t, err)
	assert.False(t, got)
	assert.True(t, s.Verified())

	bad := &Sim{Board: "sb-2", Socket: lineServer(t, func(string) string { return "error: board closed" })}
	err = bad.On(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "power on sb-2: simboard ")
	assert.Contains(t, err.Error(), "board closed")

	gone := &Sim{Board: "sb-3", Socket: filepath.Join(t.TempDir(), "none.sock")}
	_, err = gone.State(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "power state sb-3: simboard")
}
