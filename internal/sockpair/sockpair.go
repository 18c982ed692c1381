// Package sockpair makes a connected pair of Unix stream sockets: one end
// for troupe, on the Go runtime's poller (a blocked read costs no thread),
// the other a plain file for a child process to inherit. It is how a
// board's MultiNode side channel is made (sim: the shells' inherited
// descriptor; qemu: a virtio-serial port's character device).
package sockpair

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// New returns troupe's end and the other one, named name (both close on
// exec: hand the other end to a child with exec.Cmd.ExtraFiles).
func New(name string) (net.Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socket pair: %w", err)
	}
	h := os.NewFile(uintptr(fds[0]), name+"-harness")
	defer h.Close() // FileConn dups it
	conn, err := net.FileConn(h)
	if err != nil {
		_ = unix.Close(fds[1])
		return nil, nil, fmt.Errorf("socket pair: %w", err)
	}
	return conn, os.NewFile(uintptr(fds[1]), name+"-board"), nil
}
