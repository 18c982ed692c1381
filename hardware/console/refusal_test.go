package console

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refuser accepts connections and serves each with serve, in turn.
func refuser(t *testing.T, serve func(n int, c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			serve(n, c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// TestTCPRefusedIsLost: a peer that accepts every reconnect, says what
// ser2net says when the serial adapter behind it is gone, and closes, takes
// the console lost after 3 refusals in a row, long before the reconnect
// window ends; the error names the board, the address and what it said.
func TestTCPRefusedIsLost(t *testing.T) {
	tests := []struct{ name, say, want string }{
		{"device open failure", "Device open failure: Value or file not found\r\n", `(the last one said "Device open failure: Value or file not found")`},
		{"closed at once", "", "(each closed at once)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := refuser(t, func(n int, c net.Conn) {
				if n == 0 {
					// The first connection works for a while.
					_, _ = c.Write([]byte("login: "))
					time.Sleep(1200 * time.Millisecond)
				}
				_, _ = c.Write([]byte(tc.say))
				_ = c.Close()
			})
			c := dialTest(t, addr, 30*time.Second)
			readUntil(t, c, "login: ", 2*time.Second)
			start := time.Now()
			err := waitErr(t, readErr(c), 5*time.Second)
			require.ErrorIs(t, err, ErrLost)
			assert.Less(t, time.Since(start), 3*time.Second, "lost on refusals, not at the end of the 30s window")
			assert.Contains(t, err.Error(), "console of rpi-02: tcp "+addr+": console lost: the peer refused 3 connections in a row")
			assert.Contains(t, err.Error(), tc.want)
			_, err = c.Write([]byte("x"))
			assert.ErrorIs(t, err, ErrLost, "sticky")
		})
	}
}

// TestTCPKeptConnectionClearsRefusals: refusals count only in a row; a
// connection the peer keeps starts the count again.
func TestTCPKeptConnectionClearsRefusals(t *testing.T) {
	addr := refuser(t, func(n int, c net.Conn) {
		switch n {
		case 0, 3: // kept a while, with board output
			_, _ = c.Write([]byte("board output\n"))
			time.Sleep(1200 * time.Millisecond)
			_ = c.Close()
		case 1, 2, 4, 5: // refused
			_, _ = c.Write([]byte("Device open failure: busy\r\n"))
			_ = c.Close()
		default: // kept open until the test ends
			_, _ = c.Write([]byte("END\n"))
			t.Cleanup(func() { _ = c.Close() })
		}
	})
	c := dialTest(t, addr, 30*time.Second)
	got := readUntil(t, c, "END\n", 10*time.Second)
	assert.Equal(t, 2, strings.Count(got, "board output\n"), "%q", got)
	assert.Equal(t, 4, strings.Count(got, "Device open failure"), "%q", got)
}

func TestIsRefusal(t *testing.T) {
	for s, want := range map[string]bool{
		"Device open failure: Value or file not found\r\n": true,
		"\r\nPort already in use\r\n":                      true,
		"port busy":                                        true,
		"":                                                 false,
		"login: ":                                          false,
		"Device open failure: x\r\nU-Boot 2024.01\r\n": false,
	} {
		assert.Equal(t, want, isRefusal([]byte(s)), "%q", s)
	}
}
