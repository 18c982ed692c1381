package power

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultPDUDaemonURL is where pdudaemon listens by default.
const DefaultPDUDaemonURL = "http://localhost:16421"

// defaultHTTPClient: pdudaemon requests are few, so no idle connections
// are kept.
var defaultHTTPClient = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableKeepAlives = true
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}()

// PDUDaemon drives an outlet through pdudaemon's HTTP API:
//
//	GET {URL}/power/control/{on|off}?hostname={Hostname}&port={Port}
//
// URL defaults to DefaultPDUDaemonURL; Hostname is the PDU's name in
// pdudaemon's configuration and Port the outlet number. Client defaults to a
// client with a 30s timeout; ctx bounds each request too.
//
// pdudaemon answers 200 as soon as it has queued the request, even when the
// outlet command later fails, and it cannot read an outlet back. So a nil
// error from On or Off means only "pdudaemon took the request". State comes
// from StateCommand when set (run as Command.StateCommand is: stdout
// "on"/"off", else exit status 0 on, 1 with empty stderr off; bounded by
// DefaultCommandTimeout); without one, State returns the last commanded
// state and Verified returns false. Wrap a PDUDaemon with a StateCommand in
// Verify to catch outlets that did not switch.
type PDUDaemon struct {
	Board        string
	URL          string
	Hostname     string
	Port         int
	StateCommand []string
	Client       *http.Client

	mu   sync.Mutex
	last bool
}

// On asks pdudaemon to switch the outlet on.
func (p *PDUDaemon) On(ctx context.Context) error { return p.set(ctx, true) }

// Off asks pdudaemon to switch the outlet off.
func (p *PDUDaemon) Off(ctx context.Context) error { return p.set(ctx, false) }

// State runs StateCommand, or returns the last commanded state without one.
func (p *PDUDaemon) State(ctx context.Context) (bool, error) {
	if len(p.StateCommand) == 0 {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.last, nil
	}
	on, err := commandState(ctx, p.StateCommand, 0)
	return on, wrap(OpState, p.Board, err)
}

// Verified tells whether State reads the outlet (StateCommand is set).
func (p *PDUDaemon) Verified() bool { return len(p.StateCommand) > 0 }

// Reboot asks pdudaemon to power-cycle the outlet (its "reboot" command).
// Like On and Off, a nil error only means pdudaemon took the request.
func (p *PDUDaemon) Reboot(ctx context.Context) error {
	if err := p.request(ctx, "reboot"); err != nil {
		return wrap(OpReboot, p.Board, err)
	}
	p.mu.Lock()
	p.last = true
	p.mu.Unlock()
	return nil
}

func (p *PDUDaemon) set(ctx context.Context, on bool) error {
	if err := p.request(ctx, word(on)); err != nil {
		return wrap(opFor(on), p.Board, err)
	}
	p.mu.Lock()
	p.last = on
	p.mu.Unlock()
	return nil
}

func (p *PDUDaemon) base() string {
	if p.URL == "" {
		return DefaultPDUDaemonURL
	}
	return strings.TrimRight(p.URL, "/")
}

func (p *PDUDaemon) request(ctx context.Context, command string) error {
	base := p.base()
	if p.Hostname == "" {
		return fmt.Errorf("pdudaemon %s: no PDU hostname configured", base)
	}
	q := url.Values{}
	q.Set("hostname", p.Hostname)
	q.Set("port", strconv.Itoa(p.Port))
	u := base + "/power/control/" + command + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("pdudaemon %s: %w", base, err)
	}
	client := p.Client
	if client == nil {
		client = defaultHTTPClient
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the message already
		}
		return fmt.Errorf("pdudaemon %s: %w", base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		msg := fmt.Sprintf("pdudaemon %s: %s", base, resp.Status)
		if b := lastLine(string(body)); b != "" {
			msg += ": " + b
		}
		return errors.New(msg)
	}
	return nil
}
