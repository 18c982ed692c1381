package hardware

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/troupe-lab/troupe/lab"
)

// Limits of a guest's ssh login.
const (
	sshHandshakeTimeout = 30 * time.Second
	maxKeyFile          = 64 << 10
)

// OpenSession logs in to the board over ssh for a guest's session (LAVA's
// ssh guests), as its lab entry's [board.ssh] says: at its address only
// (addr, from the job's message, must name that address or be ""; the
// lab's key never goes elsewhere), as its user with the lab's key,
// checking the board's host key. The session is a shell on a terminal;
// its $TMPDIR is a fresh directory of its own, so the test shells of
// several guests keep their files apart. Closing it ends the login.
func (b *Board) OpenSession(ctx context.Context, addr string) (io.ReadWriteCloser, error) {
	if b.hw.SSH == nil {
		return nil, fmt.Errorf("board %s hosts no ssh guests: its lab entry has no [board.ssh]", b.name)
	}
	rw, err := openSSH(ctx, *b.hw.SSH, addr)
	if err != nil {
		return nil, fmt.Errorf("board %s: %w", b.name, err)
	}
	return rw, nil
}

// sameAddress reports whether addr (host or host:port) names the lab's
// address want (host:port); a host alone (what LAVA's messages carry)
// stands for the lab's port.
func sameAddress(addr, want string) bool {
	if addr == want {
		return true
	}
	host, _, err := net.SplitHostPort(want)
	return err == nil && addr == host
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxKeyFile)
	}
	return data, nil
}

// openSSH logs in at cfg.Address and starts a shell on a terminal.
func openSSH(ctx context.Context, cfg lab.SSH, addr string) (io.ReadWriteCloser, error) {
	if addr != "" && !sameAddress(addr, cfg.Address) {
		return nil, fmt.Errorf("ssh login to %q refused: the board's lab entry has ssh address %s", addr, cfg.Address)
	}
	keyData, err := readKeyFile(cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(keyData)
	if err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", cfg.Key, err)
	}
	hostData, err := readKeyFile(cfg.HostKey)
	if err != nil {
		return nil, fmt.Errorf("ssh host key: %w", err)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey(hostData)
	if err != nil {
		return nil, fmt.Errorf("ssh host key %s: %w", cfg.HostKey, err)
	}
	conf := &ssh.ClientConfig{
		User:            cfg.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hostKey),
		Timeout:         sshHandshakeTimeout,
	}
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, sshHandshakeTimeout)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", cfg.Address, err)
	}
	// The handshake is bounded by ctx and the handshake timeout.
	stop := context.AfterFunc(dctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	c, chans, reqs, err := ssh.NewClientConn(conn, cfg.Address, conf)
	if !stop() {
		err = errors.Join(err, dctx.Err())
	}
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("ssh %s: %w", cfg.Address, err)
	}
	_ = conn.SetDeadline(time.Time{})
	client := ssh.NewClient(c, chans, reqs)
	s, err := shell(client)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("ssh %s: %w", cfg.Address, err)
	}
	return s, nil
}

// sshShell is a shell of an ssh login: the terminal's output and input.
type sshShell struct {
	io.Reader
	io.WriteCloser
	sess   *ssh.Session
	client *ssh.Client
	once   sync.Once
}

func shell(client *ssh.Client) (*sshShell, error) {
	sess, err := client.NewSession()
	if err != nil {
		return nil, err
	}
	modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 115200, ssh.TTY_OP_OSPEED: 115200}
	if err := sess.RequestPty("dumb", 50, 200, modes); err != nil {
		_ = sess.Close()
		return nil, fmt.Errorf("terminal: %w", err)
	}
	in, err := sess.StdinPipe()
	if err != nil {
		_ = sess.Close()
		return nil, err
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		_ = sess.Close()
		return nil, err
	}
	if err := sess.Shell(); err != nil {
		_ = sess.Close()
		return nil, fmt.Errorf("shell: %w", err)
	}
	// A $TMPDIR of its own: the test shell keeps its files there.
	tok := make([]byte, 8)
	_, _ = rand.Read(tok)
	dir := "/tmp/troupe-session-" + hex.EncodeToString(tok)
	if _, err := fmt.Fprintf(in, "mkdir -p %s && TMPDIR=%s && export TMPDIR\n", dir, dir); err != nil {
		_ = sess.Close()
		return nil, err
	}
	return &sshShell{Reader: out, WriteCloser: in, sess: sess, client: client}, nil
}

// Close ends the login.
func (s *sshShell) Close() error {
	s.once.Do(func() {
		_ = s.sess.Close()
		_ = s.client.Close()
	})
	return nil
}
