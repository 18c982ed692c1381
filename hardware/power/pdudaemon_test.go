package power

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakePDUDaemon speaks pdudaemon's HTTP API on loopback and keeps the
// outlet's state in a file.
type fakePDUDaemon struct {
	srv  *httptest.Server
	file string

	mu    sync.Mutex
	reqs  []string // "on host port"
	fail  bool     // answer 500
	lies  int      // answer 200 without switching this many times (-1: always)
	delay time.Duration
	timer *time.Timer
}

func newFakePDUDaemon(t *testing.T, initial string) *fakePDUDaemon {
	t.Helper()
	f := &fakePDUDaemon{file: outletFile(t, initial)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		f.srv.Close()
		f.mu.Lock()
		if f.timer != nil {
			f.timer.Stop()
		}
		f.mu.Unlock()
	})
	return f
}

func (f *fakePDUDaemon) serve(w http.ResponseWriter, r *http.Request) {
	cmd, ok := strings.CutPrefix(r.URL.Path, "/power/control/")
	if !ok || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, cmd+" "+q.Get("hostname")+" "+q.Get("port"))
	if f.fail {
		http.Error(w, "outlet error", http.StatusInternalServerError)
		return
	}
	if f.lies != 0 {
		if f.lies > 0 {
			f.lies--
		}
		return // 200, outlet untouched
	}
	write := func() { _ = os.WriteFile(f.file, []byte(cmd+"\n"), 0o644) }
	if f.delay > 0 {
		f.timer = time.AfterFunc(f.delay, write) // like pdudaemon's queue
	} else {
		write()
	}
}

func (f *fakePDUDaemon) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

func (f *fakePDUDaemon) set(fn func(f *fakePDUDaemon)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakePDUDaemon) driver(withState bool) *PDUDaemon {
	p := &PDUDaemon{Board: "rpi-01", URL: f.srv.URL + "/", Hostname: "pdu1", Port: 4, Client: f.srv.Client()}
	if withState {
		p.StateCommand = []string{"cat", f.file}
	}
	return p
}

func TestPDUDaemonSwitchesAndReadsBack(t *testing.T) {
	ctx := testCtx(t)
	f := newFakePDUDaemon(t, "off")
	p := f.driver(true)
	var _ Switch = p
	assert.True(t, p.Verified())

	require.NoError(t, p.On(ctx))
	on, err := p.State(ctx)
	require.NoError(t, err)
	assert.True(t, on)

	require.NoError(t, p.Off(ctx))
	on, err = p.State(ctx)
	require.NoError(t, err)
	assert.False(t, on)

	require.NoError(t, p.Reboot(ctx))
	assert.Equal(t, []string{"on pdu1 4", "off pdu1 4", "reboot pdu1 4"}, f.requests())
}

func TestPDUDaemon500NamesBoardAndCause(t *testing.T) {
	ctx := testCtx(t)
	f := newFakePDUDaemon(t, "off")
	f.set(func(f *fakePDUDaemon) { f.fail = true })
	p := f.driver(true)

	err := p.On(ctx)
	require.Error(t, err)
	assert.Equal(t, "power on rpi-01: pdudaemon "+f.srv.URL+": 500 Internal Server Error: outlet error", err.Error())
	var pe *Error
	require.True(t, errors.As(err, &pe))
	assert.Equal(t, OpOn, pe.Op)
	assert.Equal(t, "rpi-01", pe.Board)

	err = p.Off(ctx)
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "power off rpi-01: pdudaemon "), err.Error())
}

func TestPDUDaemonWithoutStateCommandRepeatsLastCommand(t *testing.T) {
	ctx := testCtx(t)
	f := newFakePDUDaemon(t, "off")
	f.set(func(f *fakePDUDaemon) { f.lies = -1 })
	p := f.driver(false)
	assert.False(t, p.Verified())

	on, err := p.State(ctx)
	require.NoError(t, err)
	assert.False(t, on)
	require.NoError(t, p.On(ctx))
	on, err = p.State(ctx)
	require.NoError(t, err)
	assert.True(t, on, "last commanded state, though the outlet is off")
	assert.Equal(t, "off", readOutlet(t, f.file))
}

func TestPDUDaemonUnreachable(t *testing.T) {
	ctx := testCtx(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close()) // nothing listens there now

	p := &PDUDaemon{Board: "rpi-02", URL: "http://" + addr, Hostname: "pdu1", Port: 1}
	err = p.On(ctx)
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "power on rpi-02: pdudaemon http://"+addr+": "), err.Error())
	assert.Contains(t, err.Error(), "refused")
}

func TestPDUDaemonRequiresHostname(t *testing.T) {
	p := &PDUDaemon{Board: "rpi-03"}
	err := p.On(context.Background())
	require.Error(t, err)
	assert.Equal(t, "power on rpi-03: pdudaemon "+DefaultPDUDaemonURL+": no PDU hostname configured", err.Error())
}

func TestPDUDaemonStateCommandFails(t *testing.T) {
	ctx := testCtx(t)
	f := newFakePDUDaemon(t, "off")
	p := f.driver(false)
	p.StateCommand = []string{"cat", f.file + ".missing"}
	_, err := p.State(ctx)
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "power state rpi-01: command [cat "), err.Error())
	assert.Contains(t, err.Error(), "exit status 1")
	assert.Contains(t, err.Error(), "No such file")
}
