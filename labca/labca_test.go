package labca

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// handshake runs a TLS handshake between the two configurations over a
// pipe and returns each side's error.
func handshake(t *testing.T, server, client *tls.Config) (serr, cerr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	deadline := time.Now().Add(10 * time.Second)
	done := make(chan error, 1)
	go func() {
		a, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		_ = a.SetDeadline(deadline)
		s := tls.Server(a, server)
		err = s.Handshake()
		if err == nil {
			// TLS 1.3: the client's certificate is checked after the
			// client's handshake returns; read to see the outcome.
			_, err = s.Read(make([]byte, 1))
		}
		a.Close()
		done <- err
	}()
	b, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.SetDeadline(deadline))
	c := tls.Client(b, client)
	cerr = c.Handshake()
	if cerr == nil {
		_, cerr = c.Write([]byte("x"))
	}
	return <-done, cerr
}

func TestMutualTLS(t *testing.T) {
	dir, foreign := t.TempDir(), t.TempDir()
	require.NoError(t, Init(dir))
	require.NoError(t, Issue(dir, "w1"))
	require.NoError(t, Init(foreign))
	require.NoError(t, Issue(foreign, "w1"))
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	server, err := Config(dir, ServerName, nil, logger)
	require.NoError(t, err)
	worker, err := Config(dir, "w1", func(p string) bool { return p == ServerName }, logger)
	require.NoError(t, err)
	serr, cerr := handshake(t, server, worker)
	assert.NoError(t, serr)
	assert.NoError(t, cerr)

	t.Run("foreign CA refused and logged", func(t *testing.T) {
		logs.Reset()
		pair, err := tls.LoadX509KeyPair(filepath.Join(foreign, "w1.pem"), filepath.Join(foreign, "w1-key.pem"))
		require.NoError(t, err)
		stranger := &tls.Config{Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} //nolint:gosec // the attacker
		serr, _ := handshake(t, server, stranger)
		require.Error(t, serr)
		assert.Contains(t, logs.String(), "TLS peer refused")
		assert.Contains(t, logs.String(), "not from the lab CA")
	})
	t.Run("no certificate refused", func(t *testing.T) {
		logs.Reset()
		bare := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} //nolint:gosec // the attacker
		serr, _ := handshake(t, server, bare)
		require.Error(t, serr)
		assert.Contains(t, logs.String(), "no certificate")
	})
	t.Run("worker refuses a server of another CA", func(t *testing.T) {
		fake, err := Config(foreign, ServerName, nil, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		_, cerr := handshake(t, fake, worker)
		require.Error(t, cerr)
	})
	t.Run("worker refuses a worker posing as the server", func(t *testing.T) {
		other, err := Config(dir, "w1", nil, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		_, cerr := handshake(t, other, worker)
		require.Error(t, cerr)
	})
}

func TestIssueRules(t *testing.T) {
	dir := t.TempDir()
	assert.Error(t, Issue(dir, "w1"), "no CA yet")
	require.NoError(t, Init(dir))
	assert.Error(t, Init(dir), "a second CA would orphan the issued certificates")
	for _, bad := range []string{"", "server", "ca", "../x", "W1", "a/b", string(make([]byte, 70))} {
		assert.Error(t, Issue(dir, bad), "%q", bad)
	}
	require.NoError(t, Issue(dir, "rack-1.w2"))
	assert.Error(t, Issue(dir, "rack-1.w2"), "issued twice")
	assert.FileExists(t, filepath.Join(dir, "rack-1.w2-key.pem"))
}
