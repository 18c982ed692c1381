package console

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/troupe-lab/troupe/internal/testenv"
)

func TestTelnetDecode(t *testing.T) {
	tn := newTelnet(false, Line{})
	in := []byte{'a', tnIAC, tnIAC, 'b', tnIAC, tnWILL, optEcho, tnIAC, tnDO, 31, 'c',
		tnIAC, tnSB, 24, 1, tnIAC, tnSE, '\r', 0, 'd', tnIAC, 241, 'e'}
	data, reply := tn.decode(nil, nil, in)
	assert.Equal(t, []byte{'a', tnIAC, 'b', 'c', '\r', 'd', 'e'}, data, "IAC IAC is a data byte; CR NUL is CR while the peer is not binary; commands go")
	assert.Equal(t, []byte{tnIAC, tnDO, optEcho, tnIAC, tnWONT, 31}, reply, "echo accepted, NAWS refused")

	// Asked again: no second answer (no negotiation loop).
	_, reply = tn.decode(nil, nil, []byte{tnIAC, tnWILL, optEcho, tnIAC, tnDO, 31})
	assert.Empty(t, reply)

	// A sequence split across reads.
	data, _ = tn.decode(nil, nil, []byte{'x', tnIAC})
	assert.Equal(t, []byte("x"), data)
	data, _ = tn.decode(nil, nil, []byte{tnIAC, 'y'})
	assert.Equal(t, []byte{tnIAC, 'y'}, data)

	// Decoding in place.
	buf := []byte{'1', tnIAC, tnWILL, optSGA, '2', tnIAC, tnIAC, '3'}
	data, _ = tn.decode(buf[:0], nil, buf)
	assert.Equal(t, []byte{'1', '2', tnIAC, '3'}, data)
}

func TestTelnetEncode(t *testing.T) {
	tn := newTelnet(false, Line{})
	assert.Equal(t, []byte{'a', tnIAC, tnIAC, '\r', 0, 'b', '\r', '\n'}, tn.encode(nil, []byte{'a', tnIAC, '\r', 'b', '\r', '\n'}))
	tn.decode(nil, nil, []byte{tnIAC, tnDO, optBinary})
	assert.Equal(t, []byte{'\r', 'b'}, tn.encode(nil, []byte("\rb")), "binary: CR as it is")
}

// TestTelnetComPort: once the server agrees to COM-PORT-OPTION the line is
// set (baud with an IAC byte in it is escaped), and the server's answer
// is read back.
func TestTelnetComPort(t *testing.T) {
	tn := newTelnet(true, Line{Baud: 0x0001ff00, Parity: "even", StopBits: 2, Flow: "rtscts"})
	assert.Contains(t, string(tn.start()), string([]byte{tnIAC, tnWILL, optComPort}))
	_, reply := tn.decode(nil, nil, []byte{tnIAC, tnDO, optComPort})
	want := []byte{
		tnIAC, tnSB, optComPort, cpSetBaud, 0, 1, tnIAC, tnIAC, 0, tnIAC, tnSE,
		tnIAC, tnSB, optComPort, cpSetDataSize, 8, tnIAC, tnSE,
		tnIAC, tnSB, optComPort, cpSetParity, 3, tnIAC, tnSE,
		tnIAC, tnSB, optComPort, cpSetStopSize, 2, tnIAC, tnSE,
		tnIAC, tnSB, optComPort, cpSetControl, 3, tnIAC, tnSE,
	}
	assert.Equal(t, want, reply, "WILL was offered at start: no second WILL")
	_, ok := tn.ackedBaud()
	assert.False(t, ok)
	tn.decode(nil, nil, []byte{tnIAC, tnSB, optComPort, cpServerBase + cpSetBaud, 0, 1, tnIAC, tnIAC, 0, tnIAC, tnSE})
	baud, ok := tn.ackedBaud()
	assert.True(t, ok)
	assert.Equal(t, 0x0001ff00, baud)

	// A plain telnet console refuses COM-PORT-OPTION.
	plain := newTelnet(false, Line{})
	_, reply = plain.decode(nil, nil, []byte{tnIAC, tnDO, optComPort})
	assert.Equal(t, []byte{tnIAC, tnWONT, optComPort}, reply)
}

func FuzzTelnetDecode(f *testing.F) {
	f.Add([]byte{'a', tnIAC, tnIAC, tnIAC, tnSB, optComPort, 101, 0, 0, 0x25, 0x80, tnIAC, tnSE})
	f.Add([]byte{tnIAC, tnDO, optComPort, tnIAC, tnWILL, optBinary, '\r', 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		tn := newTelnet(true, Line{Baud: 9600})
		data, reply := tn.decode(nil, nil, in)
		if len(data) > len(in) {
			t.Fatalf("%d data bytes out of %d", len(data), len(in))
		}
		if len(tn.sb) > maxSubneg {
			t.Fatalf("subnegotiation kept %d bytes", len(tn.sb))
		}
		// In place gives the same.
		tn2 := newTelnet(true, Line{Baud: 9600})
		buf := bytes.Clone(in)
		data2, reply2 := tn2.decode(buf[:0], nil, buf)
		if !bytes.Equal(data, data2) || !bytes.Equal(reply, reply2) {
			t.Fatalf("in place: %q/%q, copy: %q/%q", data2, reply2, data, reply)
		}
	})
}

// TestTelnetConsole: a TCP console in telnet mode against a telnet server:
// the negotiation is answered, the data comes through clean, IAC both ways.
func TestTelnetConsole(t *testing.T) {
	srv := newServer(t)
	c, err := DialTCP("rpi-02", srv.addr(), TCPOptions{DialTimeout: time.Second, Mode: ModeTelnet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	sc := srv.accept(t)
	opening := readN(t, sc, 12)
	assert.Equal(t, []byte{tnIAC, tnDO, optBinary, tnIAC, tnWILL, optBinary, tnIAC, tnDO, optSGA, tnIAC, tnWILL, optSGA}, opening)
	_, err = sc.Write(append([]byte{tnIAC, tnWILL, optEcho, 'l', 'o', 'g', tnIAC, tnIAC}, "in: "...))
	require.NoError(t, err)
	assert.Equal(t, "log\xffin: ", readUntil(t, c, "in: ", 2*time.Second))
	assert.Equal(t, []byte{tnIAC, tnDO, optEcho}, readN(t, sc, 3))
	_, err = c.Write([]byte{'r', tnIAC, '\n'})
	require.NoError(t, err)
	assert.Equal(t, []byte{'r', tnIAC, tnIAC, '\n'}, readN(t, sc, 4))
}

func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
	buf := make([]byte, n)
	_, err := io.ReadFull(c, buf)
	require.NoError(t, err)
	return buf
}

// needSer2net returns the path of ser2net: missing, the test skips, or
// fails under CI=true (a CI run never skips silently).
func needSer2net(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"ser2net", "/usr/sbin/ser2net", "/usr/local/sbin/ser2net"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := "ser2net not found (apt-get install -y ser2net)"
	testenv.Missing(t, msg)
	return ""
}

// TestRFC2217Ser2net: a console in mode rfc2217 through the real ser2net
// sets the line of the serial device behind it (a pty here; ser2net opens
// it at 115200 8N1) and the bytes pass both ways.
func TestRFC2217Ser2net(t *testing.T) {
	bin := needSer2net(t)
	master, slave, err := pty.Open()
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = master.Close()
		_ = slave.Close()
	})
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().(*net.TCPAddr)
	require.NoError(t, ln.Close())
	cfg := filepath.Join(dir, "ser2net.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`%%YAML 1.1
---
connection: &board
  accepter: "telnet(rfc2217),tcp,127.0.0.1,%d"
  connector: "serialdev,%s,115200n81,local"
  options:
    kickolduser: true
`, addr.Port, slave.Name())), 0o644))
	var log bytes.Buffer
	cmd := exec.Command(bin, "-n", "-d", "-u", "-c", cfg, "-P", filepath.Join(dir, "pid"))
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("ser2net log:\n%s", log.String())
		}
	})
	var c *TCP
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err = DialTCP("rpi-02", addr.String(), TCPOptions{DialTimeout: time.Second, Mode: ModeRFC2217,
			Line: Line{Baud: 9600, Parity: "odd", StopBits: 2, Flow: "none"}})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	rd := make(chan string, 1)
	go func() {
		var got []byte
		buf := make([]byte, 64)
		for !bytes.Contains(got, []byte("login: ")) {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		rd <- string(got)
	}()
	// The line is set once ser2net has the device open and got the
	// commands: poll the device's settings.
	var tio *unix.Termios
	for deadline = time.Now().Add(5 * time.Second); ; {
		tio, err = unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		require.NoError(t, err)
		if tio.Cflag&unix.CBAUD == unix.B9600 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	assert.Equal(t, uint32(unix.B9600), tio.Cflag&unix.CBAUD, "baud set over the network")
	// A pty keeps PARENB off whatever is asked (drivers/tty/pty.c); the
	// parity asked for shows in PARODD.
	assert.NotZero(t, tio.Cflag&unix.PARODD, "odd parity")
	assert.NotZero(t, tio.Cflag&unix.CSTOPB, "2 stop bits")
	_, err = master.Write([]byte("U-Boot\r\nrpi login: "))
	require.NoError(t, err)
	select {
	case got := <-rd:
		assert.Equal(t, "U-Boot\r\nrpi login: ", got)
	case <-time.After(5 * time.Second):
		t.Fatal("no console output through ser2net")
	}
	_, err = c.Write([]byte("root\n"))
	require.NoError(t, err)
	assert.Equal(t, "root\n", readUntil(t, master, "\n", 3*time.Second))
	baud, ok := c.ConfirmedBaud()
	assert.True(t, ok, "ser2net answered the baud rate")
	assert.Equal(t, 9600, baud)
}

// TestSerialLineSettings: parity, stop bits and flow control reach the
// device. (A pty keeps PARENB off whatever is asked, drivers/tty/pty.c;
// which parity was asked for shows in PARODD and CMSPAR.)
func TestSerialLineSettings(t *testing.T) {
	tests := []struct {
		line             Line
		cflagOn, cflagOf uint32
		iflagOn, iflagOf uint32
	}{
		{Line{Baud: 9600, Parity: "mark", StopBits: 2, Flow: "rtscts"}, unix.CMSPAR | unix.PARODD | unix.CSTOPB | unix.CRTSCTS, 0, 0, unix.IXON},
		{Line{Baud: 57600, Parity: "odd", Flow: "xonxoff"}, unix.PARODD, unix.CMSPAR | unix.CSTOPB | unix.CRTSCTS, unix.IXON | unix.IXOFF, 0},
		{Line{Baud: 19200, Parity: "space"}, unix.CMSPAR, unix.PARODD, 0, 0},
		{Line{Baud: 115200}, 0, unix.PARODD | unix.CMSPAR | unix.CSTOPB | unix.CRTSCTS, 0, unix.IXON | unix.IXOFF},
	}
	for _, tc := range tests {
		t.Run(tc.line.String(), func(t *testing.T) {
			master, slave, err := pty.Open()
			require.NoError(t, err)
			defer master.Close()
			defer slave.Close()
			s, err := OpenSerial("rpi-01", slave.Name(), tc.line)
			require.NoError(t, err)
			defer s.Close()
			tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
			require.NoError(t, err)
			assert.Equal(t, tc.cflagOn, tio.Cflag&tc.cflagOn, "cflag set")
			assert.Equal(t, uint32(map[int]uint32{9600: unix.B9600, 57600: unix.B57600, 19200: unix.B19200, 115200: unix.B115200}[tc.line.Baud]), tio.Cflag&unix.CBAUD, "baud")
			assert.Zero(t, tio.Cflag&tc.cflagOf, "cflag clear")
			assert.Equal(t, tc.iflagOn, tio.Iflag&tc.iflagOn, "iflag set")
			assert.Zero(t, tio.Iflag&tc.iflagOf, "iflag clear")
		})
	}
	_, err := OpenSerial("rpi-01", "/dev/null", Line{Baud: 9600, Parity: "sideways"})
	assert.ErrorContains(t, err, `console of rpi-01: open /dev/null: invalid parity "sideways"`)
}
