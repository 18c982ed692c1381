package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"

	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/server"
)

// client talks to a troupe server's API.
type client struct {
	base  string // http://host:port
	token string
	http  *http.Client
}

// clientFlags adds --server and --token to fs; defaults from TROUPE_SERVER
// and TROUPE_TOKEN.
func clientFlags(fs *flag.FlagSet) func() *client {
	def := os.Getenv("TROUPE_SERVER")
	if def == "" {
		def = "http://127.0.0.1:8480"
	}
	srv := fs.String("server", def, "server URL (env TROUPE_SERVER)")
	// Not a default from the environment: usage texts print defaults.
	tok := fs.String("token", "", "API token (default: env TROUPE_TOKEN)")
	return func() *client {
		if *tok == "" {
			*tok = os.Getenv("TROUPE_TOKEN")
		}
		base := strings.TrimSuffix(*srv, "/")
		if !strings.Contains(base, "://") {
			base = "http://" + base
		}
		return &client{base: base, token: *tok, http: &http.Client{Timeout: time.Minute}}
	}
}

// apiError is an error answer of the server.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

// do sends a request and decodes a JSON answer into out (unless nil).
func (c *client) do(method, path, ctype string, body []byte, out any) error {
	return c.doContext(context.Background(), method, path, ctype, body, out)
}

// doContext is do within ctx.
func (c *client) doContext(ctx context.Context, method, path, ctype string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set(server.ClientHeader, "cli")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("server %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("server %s: %w", c.base, err)
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return &apiError{code: resp.StatusCode, msg: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("server %s: %s %s: %w", c.base, method, path, err)
	}
	return nil
}

// exitFor maps a client error to an exit code: bad input 3, else 2.
func exitFor(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "troupe: %v\n", err)
	var ae *apiError
	if errors.As(err, &ae) && ae.code == http.StatusBadRequest {
		return exitInvalid
	}
	return exitIncomplete
}

// cmdSubmit is `troupe submit FILE [--follow]`.
func cmdSubmit(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	connect := clientFlags(fs)
	follow := fs.Bool("follow", false, "stream the merged log until the job ends; exit code as troupe run")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 1 {
		return usageError(fs, "want one job file, got %d arguments", fs.NArg())
	}
	c := connect()
	path := fs.Arg(0)
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "troupe: %v\n", err)
		return exitInvalid
	}
	format := "toml"
	if ext := filepath.Ext(path); ext == ".yaml" || ext == ".yml" {
		format = "lava"
	}
	// The server resolves the job's relative image paths against the
	// file's path: a server on this machine finds them.
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	q := url.Values{"file": {abs}, "format": {format}}
	var created struct{ ID string }
	if err := c.do("POST", "/api/v1/jobs?"+q.Encode(), "", data, &created); err != nil {
		return exitFor(stderr, err)
	}
	fmt.Fprintf(stdout, "job %s submitted\n", created.ID)
	if !*follow {
		return exitOK
	}
	size := terminalSize(stdout)
	if size == nil {
		return c.follow(created.ID, stdout, stderr, nil)
	}
	// On a terminal: the log scrolls above a live table of the nodes, whose
	// phases come from the job's API once a second.
	prog := newProgress(time.Now, size)
	prog.show(stdout)
	defer prog.stop()
	stopPolling := c.pollNodes(created.ID, prog)
	defer stopPolling()
	return c.follow(created.ID, stdout, stderr, prog)
}

// pollNodes tells prog the phase of job id's nodes once a second until
// the returned stop is called.
func (c *client) pollNodes(id string, prog *progress) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			var j clientJob
			if c.doContext(ctx, "GET", "/api/v1/jobs/"+url.PathEscape(id), "", nil, &j) == nil && j.Started != nil {
				for _, n := range j.Nodes {
					at := *j.Started
					if finalPhase(n.Status) {
						at = time.Now()
					}
					prog.Phase(n.Name, n.Board, n.Status, at)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		cancel()
		<-done // the request ends with ctx
	}
}

// follow streams job id's merged log, reconnecting from the last line seen
// when the connection drops or the server says the client lagged, and
// returns the job's exit code once it ends.
// With prog, the lines and results go to it instead of stdout (but for
// the final summary).
func (c *client) follow(id string, stdout, stderr io.Writer, prog *progress) int {
	wsBase := "ws" + strings.TrimPrefix(c.base, "http")
	next := uint64(1)
	failures := 0
	for {
		u := fmt.Sprintf("%s/api/v1/jobs/%s/stream?from=%d", wsBase, id, next)
		h := http.Header{}
		if c.token != "" {
			h.Set("Authorization", "Bearer "+c.token)
		}
		d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
		conn, resp, err := d.Dial(u, h)
		if err != nil {
			if resp != nil && resp.StatusCode >= 400 && resp.StatusCode < 500 {
				fmt.Fprintf(stderr, "troupe: stream of job %s: %s\n", id, resp.Status)
				return exitIncomplete
			}
			if failures++; failures > 30 {
				fmt.Fprintf(stderr, "troupe: stream of job %s: %v\n", id, err)
				return exitIncomplete
			}
			time.Sleep(time.Second)
			continue
		}
		end, code := c.read(conn, &next, stdout, prog)
		_ = conn.Close()
		if end {
			return code
		}
		failures = 0
	}
}

// read prints the frames of one stream connection. It returns true and the
// exit code at the job's end.
func (c *client) read(conn *websocket.Conn, next *uint64, stdout io.Writer, prog *progress) (bool, int) {
	say := func(line string) { fmt.Fprintln(stdout, line) }
	if prog != nil {
		say = prog.Print
	}
	for {
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
		_, data, err := conn.ReadMessage()
		if err != nil {
			return false, 0
		}
		var f struct {
			Seq    uint64    `json:"seq"`
			Time   time.Time `json:"time"`
			Node   string    `json:"node"`
			Text   string    `json:"text"`
			Type   string    `json:"type"`
			Status string    `json:"status"`
			Job    json.RawMessage
		}
		if json.Unmarshal(data, &f) != nil {
			continue
		}
		switch f.Type {
		case "":
			*next = f.Seq + 1
			say(fmt.Sprintf("%s %-10s | %s", f.Time.Local().Format("15:04:05.000"), f.Node, f.Text))
			if prog != nil {
				prog.Line(f.Node, f.Text)
			}
		case "status":
			say("-- job is " + f.Status)
		case "lagged":
			*next = f.Seq + 1
			return false, 0
		case "end":
			var j clientJob
			_ = json.Unmarshal(f.Job, &j)
			r := &report.Results{Job: report.Job{Name: j.Name, Status: j.Status, Error: j.Error, DurationS: j.duration()}, Nodes: j.Nodes, Tests: j.Tests}
			if prog != nil {
				now := time.Now()
				if j.Ended != nil {
					now = *j.Ended
				}
				for _, n := range j.Nodes {
					prog.Phase(n.Name, n.Board, n.Status, now)
				}
				prog.Results("", j.Tests)
				prog.stop() // the last frame, before the summary
			}
			fmt.Fprintln(stdout)
			report.Summary(stdout, r)
			return true, r.ExitCode()
		}
	}
}

type clientJob struct{ server.Job }

// duration is how long the job ran (so far).
func (j clientJob) duration() float64 {
	if j.Started == nil {
		return 0
	}
	end := time.Now()
	if j.Ended != nil {
		end = *j.Ended
	}
	return end.Sub(*j.Started).Seconds()
}

// cmdJobs is `troupe jobs [--status S]`, `troupe jobs show ID` and
// `troupe jobs cancel ID`.
func cmdJobs(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	connect := clientFlags(fs)
	status := fs.String("status", "", "only jobs of these statuses (comma-separated)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	c := connect()
	switch {
	case fs.NArg() == 0:
		var js []server.Summary
		if err := c.do("GET", "/api/v1/jobs?"+url.Values{"status": {*status}}.Encode(), "", nil, &js); err != nil {
			return exitFor(stderr, err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tSUBMITTED\tERROR")
		for _, j := range js {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", j.ID, j.Name, j.Status, j.Submitted.Local().Format(time.DateTime), j.Error)
		}
		_ = tw.Flush()
		return exitOK
	case fs.NArg() == 2 && fs.Arg(0) == "show":
		var j clientJob
		if err := c.do("GET", "/api/v1/jobs/"+url.PathEscape(fs.Arg(1)), "", nil, &j); err != nil {
			return exitFor(stderr, err)
		}
		fmt.Fprintf(stdout, "job %s: %s\nstatus: %s\n", j.ID, j.Name, j.Status)
		if j.Error != "" {
			fmt.Fprintf(stdout, "error: %s\n", j.Error)
		}
		if j.Status == "queued" {
			var e struct{ Summary string }
			if c.do("GET", "/api/v1/jobs/"+url.PathEscape(j.ID)+"/explain", "", nil, &e) == nil && e.Summary != "" {
				fmt.Fprintf(stdout, "waiting: %s\n", e.Summary)
			}
		}
		fmt.Fprintln(stdout)
		report.Summary(stdout, &report.Results{Job: report.Job{Name: j.Name, Status: j.Status, Error: j.Error, DurationS: j.duration()}, Nodes: j.Nodes, Tests: j.Tests})
		return exitOK
	case fs.NArg() == 2 && fs.Arg(0) == "cancel":
		var j server.Summary
		if err := c.do("POST", "/api/v1/jobs/"+url.PathEscape(fs.Arg(1))+"/cancel", "", nil, &j); err != nil {
			return exitFor(stderr, err)
		}
		fmt.Fprintf(stdout, "job %s (%s) canceled\n", j.ID, j.Name)
		return exitOK
	}
	return usageError(fs, "unexpected arguments %q", fs.Args())
}

// cmdDevices is `troupe devices`.
func cmdDevices(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("devices", flag.ContinueOnError)
	fs.SetOutput(stderr)
	connect := clientFlags(fs)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return usageError(fs, "no arguments expected, got %q", fs.Args())
	}
	c := connect()
	var ds []server.Device
	if err := c.do("GET", "/api/v1/devices", "", nil, &ds); err != nil {
		return exitFor(stderr, err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tBACKEND\tHEALTH\tJOB\tTAGS")
	for _, d := range ds {
		backend := d.Backend
		if d.Worker != "" { // a worker's board, and the worker's connection
			backend = fmt.Sprintf("%s:%s", d.Worker, d.Connection)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.DeviceType, backend, d.Health, d.Job, strings.Join(d.Tags, ","))
	}
	_ = tw.Flush()
	return printWorkers(c, stdout, stderr)
}
