package hardware

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/troupe-lab/troupe/console"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/testshell"
)

// sshServer is an ssh server on loopback that runs /bin/sh on a pty for
// every session of the one client key it accepts.
type sshServer struct {
	addr    string
	hostPub ssh.PublicKey
	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
	logins  int
}

func newSSHServer(t *testing.T, clientPub ssh.PublicKey) *sshServer {
	t.Helper()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	require.NoError(t, err)
	conf := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(clientPub.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	conf.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &sshServer{addr: ln.Addr().String(), hostPub: hostSigner.PublicKey(), ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c, conf)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *sshServer) serve(c net.Conn, conf *ssh.ServerConfig) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, conf)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.logins++
	s.mu.Unlock()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.session(ch, chReqs)
		}()
	}
}

// session answers pty-req and shell: /bin/sh -i on a pty, until the
// channel closes.
func (s *sshServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	var ptm *os.File
	var cmd *exec.Cmd
	for r := range reqs {
		switch r.Type {
		case "pty-req":
			_ = r.Reply(true, nil)
		case "shell":
			cmd = exec.Command("/bin/sh", "-i")
			cmd.Env = []string{"PATH=/usr/bin:/bin", "PS1=$ ", "HOME=/tmp"}
			var err error
			if ptm, err = pty.Start(cmd); err != nil {
				_ = r.Reply(false, nil)
				return
			}
			_ = r.Reply(true, nil)
			go func() { _, _ = io.Copy(ptm, ch) }()
			go func() {
				_, _ = io.Copy(ch, ptm)
				_ = ch.Close()
			}()
		default:
			_ = r.Reply(false, nil)
		}
	}
	if cmd != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = ptm.Close()
	}
}

// sshLab writes the lab's client key and the board's host key and returns
// the board's [board.ssh] for the server s, with the client's public key.
func sshLab(t *testing.T) (lab.SSH, ssh.PublicKey) {
	t.Helper()
	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "")
	require.NoError(t, err)
	key := filepath.Join(dir, "id_ed25519")
	require.NoError(t, os.WriteFile(key, pem.EncodeToMemory(block), 0o600))
	sshPub, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	return lab.SSH{User: "root", Key: key, HostKey: filepath.Join(dir, "host_key.pub")}, sshPub
}

func writeHostKey(t *testing.T, cfg lab.SSH, k ssh.PublicKey) {
	t.Helper()
	require.NoError(t, os.WriteFile(cfg.HostKey, ssh.MarshalAuthorizedKey(k), 0o644))
}

// TestSSHSessionRunsTheTestShell: a guest's session on a hardware board
// is an ssh login (to a loopback server) that the same console and test
// shell code drives: helpers installed, a test run, its result read.
func TestSSHSessionRunsTheTestShell(t *testing.T) {
	ign := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ign) }) // after the server's cleanup
	cfg, clientPub := sshLab(t)
	srv := newSSHServer(t, clientPub)
	cfg.Address = srv.addr
	writeHostKey(t, cfg, srv.hostPub)
	b := &Board{name: "rpi-1", hw: lab.Hardware{SSH: &cfg}}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	host, _, err := net.SplitHostPort(srv.addr)
	require.NoError(t, err)
	rw, err := b.OpenSession(ctx, host) // the address of the host's message
	require.NoError(t, err)
	// As the board actor does: the shell reads the console's lines.
	ref := &conRef{}
	sh := testshell.New(ref, nil)
	con := console.New(rw, console.Options{OnLine: sh.Feed})
	ref.Console = con
	defer con.Close()
	require.NoError(t, sh.Init(ctx))
	out, err := sh.Run(ctx, testshell.Test{Name: "t", Script: `case "$TMPDIR" in /tmp/troupe-session-*) lava-test-case own-tmp --result pass;; esac
lava-test-case over-ssh --result pass`})
	require.NoError(t, err)
	assert.Equal(t, 0, out.ExitCode)
	var names []string
	for _, c := range out.Cases {
		names = append(names, c.Name+"="+c.Result)
	}
	assert.ElementsMatch(t, []string{"own-tmp=pass", "over-ssh=pass"}, names)
	require.NoError(t, con.Close())
}

type conRef struct{ *console.Console }

// TestSSHSessionRefusals: no [board.ssh], another address than the lab's
// (the lab's key never goes elsewhere, and no connection is made), a
// host key other than the lab's, and a server that never answers within
// the context are all errors.
func TestSSHSessionRefusals(t *testing.T) {
	ign := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ign) }) // after the server's cleanup
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := (&Board{name: "rpi-1"}).OpenSession(ctx, "")
	require.ErrorContains(t, err, "board rpi-1 hosts no ssh guests: its lab entry has no [board.ssh]")

	cfg, clientPub := sshLab(t)
	srv := newSSHServer(t, clientPub)
	cfg.Address = srv.addr
	writeHostKey(t, cfg, srv.hostPub)
	b := &Board{name: "rpi-1", hw: lab.Hardware{SSH: &cfg}}
	_, err = b.OpenSession(ctx, "192.0.2.7")
	require.ErrorContains(t, err, `ssh login to "192.0.2.7" refused: the board's lab entry has ssh address `+srv.addr)
	srv.mu.Lock()
	assert.Zero(t, srv.logins, "no login to another address")
	srv.mu.Unlock()

	other, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	otherPub, err := ssh.NewPublicKey(other)
	require.NoError(t, err)
	writeHostKey(t, cfg, otherPub)
	_, err = b.OpenSession(ctx, "")
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "host key mismatch"), err.Error())

	// A listener that accepts and never speaks: the handshake ends with ctx.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err == nil {
			<-ctx.Done()
			_ = c.Close()
		}
	}()
	cfg.Address = ln.Addr().String()
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	_, err = b.OpenSession(short, "")
	require.Error(t, err)
	cancel()
	<-done
}
