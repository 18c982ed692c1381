package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testCtx bounds every client call in the tests.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func startServer(t *testing.T, root string) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", root, nil)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	return s
}

func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func fetch(t *testing.T, s *Server, name string, blksize int) ([]byte, error) {
	t.Helper()
	var buf bytes.Buffer
	n, err := Get(testCtx(t), s.Addr(), name, &buf, blksize)
	assert.Equal(t, int64(buf.Len()), n)
	return buf.Bytes(), err
}

func TestGetFiles(t *testing.T) {
	root := t.TempDir()
	files := map[string][]byte{
		"small":        []byte("hello, board\n"),
		"empty":        {},
		"exact512":     randomBytes(t, 512*4),
		"exact1468":    randomBytes(t, 1468*3),
		"Image":        randomBytes(t, 3<<20),
		"dtbs/a.dtb":   randomBytes(t, 1000),
		"one-byte-off": randomBytes(t, 511),
	}
	for name, data := range files {
		writeFile(t, root, name, data)
	}
	s := startServer(t, root)
	for name, want := range files {
		for _, bs := range []int{0, 512, 1468, 8, MaxBlockSize} {
			if bs == 8 && len(want) > 1<<16 {
				continue // fine but slow
			}
			t.Run(fmt.Sprintf("%s/blksize=%d", name, bs), func(t *testing.T) {
				got, err := fetch(t, s, name, bs)
				require.NoError(t, err)
				require.Equal(t, len(want), len(got))
				require.True(t, bytes.Equal(want, got), "content differs")
			})
		}
	}
}

func TestAbsolutePathInsideRoot(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "boot/Image", []byte("kernel"))
	s := startServer(t, root)
	got, err := fetch(t, s, filepath.Join(root, "boot/Image"), 0)
	require.NoError(t, err)
	assert.Equal(t, "kernel", string(got))
	got, err = fetch(t, s, "boot//./Image", 0)
	require.NoError(t, err)
	assert.Equal(t, "kernel", string(got))
}

func TestMissingFile(t *testing.T) {
	s := startServer(t, t.TempDir())
	_, err := fetch(t, s, "Image", 0)
	require.Error(t, err)
	assert.Equal(t, fmt.Sprintf(`tftp get "Image" from %s: file not found`, s.Addr()), err.Error())
	var te *Error
	require.ErrorAs(t, err, &te)
	assert.Equal(t, ErrCodeNotFound, te.Code)
}

func TestTraversalRefused(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	writeFile(t, root, "ok", []byte("ok"))
	writeFile(t, outside, "secret", []byte("secret"))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "link-abs")))
	require.NoError(t, os.Symlink("../outside/secret", filepath.Join(root, "link-rel")))
	require.NoError(t, os.Symlink(outside, filepath.Join(root, "dir-link")))
	require.NoError(t, os.Symlink("ok", filepath.Join(root, "link-inside")))
	require.NoError(t, os.Mkdir(filepath.Join(root, "sub"), 0o755))
	s := startServer(t, root)

	for _, name := range []string{
		"../etc/passwd",
		"/etc/passwd",
		"../outside/secret",
		"sub/../../outside/secret",
		"../../../../../../etc/passwd",
		filepath.Join(outside, "secret"),
		filepath.Join(root, "..", "outside", "secret"),
		"link-abs",
		"link-rel",
		"dir-link/secret",
		"sub",
		".",
		"/",
		"",
	} {
		t.Run(name, func(t *testing.T) {
			got, err := fetch(t, s, name, 0)
			require.Error(t, err)
			assert.Empty(t, got)
			var te *Error
			require.ErrorAs(t, err, &te)
			assert.Contains(t, []uint16{ErrCodeAccess, ErrCodeNotFound}, te.Code, "%v", err)
		})
	}
	got, err := fetch(t, s, "link-inside", 0)
	require.NoError(t, err)
	assert.Equal(t, "ok", string(got))
}

// rawClient speaks raw TFTP packets to a server.
type rawClient struct {
	t    *testing.T
	conn *net.UDPConn
	to   *net.UDPAddr
}

func newRaw(t *testing.T, server string) *rawClient {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	to, err := net.ResolveUDPAddr("udp", server)
	require.NoError(t, err)
	return &rawClient{t: t, conn: conn, to: to}
}

func (r *rawClient) send(to *net.UDPAddr, p []byte) {
	_, err := r.conn.WriteToUDP(p, to)
	require.NoError(r.t, err)
}

// recv returns the next packet, or nil after d.
func (r *rawClient) recv(d time.Duration) ([]byte, *net.UDPAddr) {
	require.NoError(r.t, r.conn.SetReadDeadline(time.Now().Add(d)))
	buf := make([]byte, maxPacket)
	n, from, err := r.conn.ReadFromUDP(buf)
	if err != nil {
		var ne net.Error
		require.True(r.t, errors.As(err, &ne) && ne.Timeout(), "%v", err)
		return nil, nil
	}
	return buf[:n], from
}

func op(p []byte) uint16 { return binary.BigEndian.Uint16(p) }

func TestWriteRefused(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, root)
	r := newRaw(t, s.Addr())
	p := binary.BigEndian.AppendUint16(nil, opWRQ)
	p = appendZ(p, "upload", "octet")
	r.send(r.to, p)
	got, _ := r.recv(5 * time.Second)
	require.NotNil(t, got, "no reply to WRQ")
	require.Equal(t, opERROR, op(got))
	e := parseError(got)
	assert.Equal(t, ErrCodeAccess, e.Code)
	assert.Equal(t, "access violation", e.Message)
	_, err := os.Stat(filepath.Join(root, "upload"))
	assert.True(t, errors.Is(err, os.ErrNotExist))
}

func TestOACKAndNetascii(t *testing.T) {
	root := t.TempDir()
	data := randomBytes(t, 3<<20)
	writeFile(t, root, "Image", data)
	writeFile(t, root, "text", []byte("a\nb\r\n"))
	s := startServer(t, root)

	t.Run("tsize and blksize", func(t *testing.T) {
		r := newRaw(t, s.Addr())
		r.send(r.to, rrqPacket("Image", "octet", [][2]string{{"BLKSIZE", "1468"}, {"tsize", "0"}, {"timeout", "5"}}))
		got, tid := r.recv(5 * time.Second)
		require.NotNil(t, got)
		require.Equal(t, opOACK, op(got))
		assert.NotEqual(t, r.to.Port, tid.Port, "transfer must use a new TID")
		m, err := parseOACK(got)
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"blksize": "1468", "tsize": strconv.Itoa(len(data))}, m)
		r.send(tid, ackPacket(0))
		got, _ = r.recv(5 * time.Second)
		require.NotNil(t, got)
		require.Equal(t, opDATA, op(got))
		assert.Equal(t, uint16(1), binary.BigEndian.Uint16(got[2:]))
		assert.Equal(t, data[:1468], got[4:])
		r.send(tid, errorPacket(ErrCodeUndefined, "enough")) // server aborts
	})

	t.Run("blksize clamped", func(t *testing.T) {
		r := newRaw(t, s.Addr())
		r.send(r.to, rrqPacket("text", "octet", [][2]string{{"blksize", "99999"}}))
		got, tid := r.recv(5 * time.Second)
		require.NotNil(t, got)
		m, err := parseOACK(got)
		require.NoError(t, err)
		assert.Equal(t, strconv.Itoa(MaxBlockSize), m["blksize"])
		r.send(tid, errorPacket(ErrCodeOptionsRefused, "no"))
	})

	t.Run("netascii served unchanged, no options", func(t *testing.T) {
		r := newRaw(t, s.Addr())
		r.send(r.to, rrqPacket("text", "NetASCII", nil))
		got, tid := r.recv(5 * time.Second)
		require.NotNil(t, got)
		require.Equal(t, opDATA, op(got))
		assert.Equal(t, "a\nb\r\n", string(got[4:]))
		r.send(tid, ackPacket(1))
	})

	t.Run("mail mode refused", func(t *testing.T) {
		r := newRaw(t, s.Addr())
		r.send(r.to, rrqPacket("text", "mail", nil))
		got, _ := r.recv(5 * time.Second)
		require.NotNil(t, got)
		require.Equal(t, opERROR, op(got))
		assert.Equal(t, ErrCodeIllegalOp, parseError(got).Code)
	})
}

func TestServerRetransmitsThenAborts(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "f", []byte("data"))
	s, err := listen("127.0.0.1:0", root, nil, 50*time.Millisecond, 2)
	require.NoError(t, err)
	defer s.Close()
	r := newRaw(t, s.Addr())
	r.send(r.to, rrqPacket("f", "octet", nil))
	for i := range 3 {
		got, _ := r.recv(5 * time.Second)
		require.NotNil(t, got, "DATA #%d", i)
		require.Equal(t, opDATA, op(got))
		assert.Equal(t, "data", string(got[4:]))
	}
	got, _ := r.recv(300 * time.Millisecond)
	assert.Nil(t, got, "server kept sending after its retries")
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.transfers) == 0
	}, 5*time.Second, 10*time.Millisecond)
}

func TestClientRecoversLostPackets(t *testing.T) {
	// A server that drops the first DATA of block 2 and duplicates block 1.
	data := randomBytes(t, 1300)
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer srv.Close()
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			buf := make([]byte, 2048)
			srv.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, client, err := srv.ReadFromUDP(buf)
			if err != nil {
				return err
			}
			block := func(n uint16) []byte {
				p := binary.BigEndian.AppendUint16(nil, opDATA)
				p = binary.BigEndian.AppendUint16(p, n)
				end := min(int(n)*512, len(data))
				return append(p, data[(int(n)-1)*512:end]...)
			}
			expectACK := func(n uint16) error {
				for {
					m, _, err := srv.ReadFromUDP(buf)
					if err != nil {
						return err
					}
					if op(buf[:m]) == opACK && binary.BigEndian.Uint16(buf[2:]) == n {
						return nil
					}
				}
			}
			srv.WriteToUDP(block(1), client)
			if err := expectACK(1); err != nil {
				return err
			}
			srv.WriteToUDP(block(1), client) // duplicate: client re-ACKs 1
			if err := expectACK(1); err != nil {
				return err
			}
			// "Lose" block 2: the client times out and re-ACKs 1.
			if err := expectACK(1); err != nil {
				return err
			}
			srv.WriteToUDP(block(2), client)
			if err := expectACK(2); err != nil {
				return err
			}
			srv.WriteToUDP(block(3), client)
			return expectACK(3)
		}()
	}()
	var buf bytes.Buffer
	n, err := get(testCtx(t), srv.LocalAddr().String(), "f", &buf, 0, 100*time.Millisecond, 5)
	require.NoError(t, err)
	assert.Equal(t, int64(len(data)), n)
	assert.Equal(t, data, buf.Bytes())
	require.NoError(t, <-done)
}

func TestClientTimeout(t *testing.T) {
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer silent.Close()

	t.Run("ctx deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := Get(ctx, silent.LocalAddr().String(), "Image", &bytes.Buffer{}, 0)
		require.Error(t, err)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Less(t, time.Since(start), 2*time.Second)
	})

	t.Run("ctx cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		defer cancel()
		start := time.Now()
		_, err := Get(ctx, silent.LocalAddr().String(), "Image", &bytes.Buffer{}, 0)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Less(t, time.Since(start), 2*time.Second)
	})

	t.Run("retries exhausted", func(t *testing.T) {
		_, err := get(testCtx(t), silent.LocalAddr().String(), "Image", &bytes.Buffer{}, 0, 30*time.Millisecond, 2)
		require.ErrorIs(t, err, ErrTimeout)
		assert.Contains(t, err.Error(), `tftp get "Image" from `)
		// The request was sent 1 + 2 times.
		buf := make([]byte, 1024)
		count := 0
		for {
			silent.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, _, err := silent.ReadFromUDP(buf); err != nil {
				break
			}
			count++
		}
		assert.GreaterOrEqual(t, count, 3) // includes the earlier subtests' requests
	})

	t.Run("bad blksize", func(t *testing.T) {
		_, err := Get(testCtx(t), silent.LocalAddr().String(), "Image", &bytes.Buffer{}, 7)
		assert.Error(t, err)
	})
}

func TestCloseWhileTransferIdle(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "Image", randomBytes(t, 4096))
	s, err := Listen("127.0.0.1:0", root, nil)
	require.NoError(t, err)
	r := newRaw(t, s.Addr())
	r.send(r.to, rrqPacket("Image", "octet", nil))
	got, _ := r.recv(5 * time.Second)
	require.NotNil(t, got)
	require.Equal(t, opDATA, op(got))
	// Never ACK: the transfer is waiting for us.
	start := time.Now()
	require.NoError(t, s.Close())
	assert.Less(t, time.Since(start), 500*time.Millisecond, "Close waited for the transfer's retries")
	require.NoError(t, s.Close(), "Close is idempotent")
	// The listening port is gone.
	r.send(r.to, rrqPacket("Image", "octet", nil))
	got, _ = r.recv(200 * time.Millisecond)
	for got != nil && op(got) == opDATA { // a retransmission racing Close
		got, _ = r.recv(200 * time.Millisecond)
	}
	assert.Nil(t, got)
}

func TestConcurrentTransfers(t *testing.T) {
	root := t.TempDir()
	a, b := randomBytes(t, 1<<20), randomBytes(t, 1<<20+17)
	writeFile(t, root, "a", a)
	writeFile(t, root, "b", b)
	s := startServer(t, root)
	var wg sync.WaitGroup
	results := make([][]byte, 4)
	errs := make([]error, 4)
	for i := range 4 {
		wg.Go(func() {
			name, bs := "a", 0
			if i%2 == 1 {
				name, bs = "b", 1468
			}
			var buf bytes.Buffer
			_, errs[i] = Get(testCtx(t), s.Addr(), name, &buf, bs)
			results[i] = buf.Bytes()
		})
	}
	wg.Wait()
	for i := range 4 {
		require.NoError(t, errs[i])
		want := a
		if i%2 == 1 {
			want = b
		}
		assert.True(t, bytes.Equal(want, results[i]), "transfer %d differs", i)
	}
}
