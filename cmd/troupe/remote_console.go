package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/troupe-lab/troupe/server"
)

// remoteConsole is `troupe console BOARD` through the server: the job's
// console lines, read-only, while a job runs on the board; else the
// board's console, interactive, when the caller holds the board.
func remoteConsole(c *client, board string, stdout, stderr io.Writer) int {
	var devs []server.Device
	if err := c.do("GET", "/api/v1/devices", "", nil, &devs); err != nil {
		return exitFor(stderr, err)
	}
	job := ""
	found := false
	for _, d := range devs {
		if d.Name == board {
			found, job = true, d.Job
		}
	}
	if !found {
		fmt.Fprintf(stderr, "troupe: no device %q on %s\n", board, c.base)
		return exitInvalid
	}
	if job != "" {
		return watchJobConsole(c, board, job, stdout, stderr)
	}
	wsBase := "ws" + strings.TrimPrefix(c.base, "http")
	h := http.Header{}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, resp, err := d.Dial(wsBase+"/api/v1/devices/"+url.PathEscape(board)+"/console", h)
	if err != nil {
		if resp != nil {
			var e struct{ Error string }
			_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&e)
			resp.Body.Close()
			if e.Error == "" {
				e.Error = resp.Status
			}
			fmt.Fprintf(stderr, "troupe: console of %s: %s\n", board, e.Error)
		} else {
			fmt.Fprintf(stderr, "troupe: console of %s: %v\n", board, err)
		}
		return exitIncomplete
	}
	defer conn.Close()
	if restore, err := rawTerminal(os.Stdin); err == nil {
		defer restore()
	}
	fmt.Fprintf(stderr, "console of %s; Ctrl-] to leave\r\n", board)
	out := make(chan error, 1)
	go func() {
		for {
			_, p, err := conn.ReadMessage()
			if err != nil {
				out <- err
				return
			}
			if _, err := stdout.Write(p); err != nil {
				out <- err
				return
			}
		}
	}()
	leave := make(chan struct{})
	go func() {
		defer close(leave)
		typeInto(wsWriter{conn}, os.Stdin)
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	select {
	case err := <-out:
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Text != "" {
			fmt.Fprintf(stderr, "\r\ntroupe console: %s\r\n", ce.Text)
		} else {
			fmt.Fprintf(stderr, "\r\ntroupe console: %v\r\n", err)
		}
		return exitIncomplete
	case <-leave:
	case <-sigs:
	}
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = conn.Close()
	<-out
	fmt.Fprintf(stderr, "\r\nleft the console of %s\r\n", board)
	return exitOK
}

// wsWriter sends what is typed as binary messages.
type wsWriter struct{ c *websocket.Conn }

func (w wsWriter) Write(p []byte) (int, error) {
	if err := w.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// watchJobConsole shows, read-only, the console lines of the node that
// job runs on board, until the job ends or Ctrl-] (then Enter: the
// terminal stays cooked) or a signal.
func watchJobConsole(c *client, board, job string, stdout, stderr io.Writer) int {
	var j server.Job
	if err := c.do("GET", "/api/v1/jobs/"+url.PathEscape(job), "", nil, &j); err != nil {
		return exitFor(stderr, err)
	}
	node := ""
	for _, n := range j.Nodes {
		if n.Board == board {
			node = n.Name
		}
	}
	if node == "" {
		fmt.Fprintf(stderr, "troupe: job %s on %s: no node on the board yet\n", job, board)
		return exitIncomplete
	}
	wsBase := "ws" + strings.TrimPrefix(c.base, "http")
	h := http.Header{}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, _, err := d.Dial(fmt.Sprintf("%s/api/v1/jobs/%s/stream?node=%s", wsBase, url.PathEscape(job), url.QueryEscape(node)), h)
	if err != nil {
		fmt.Fprintf(stderr, "troupe: console of %s: %v\n", board, err)
		return exitIncomplete
	}
	defer conn.Close()
	fmt.Fprintf(stderr, "console of %s, read-only: job %s runs on it (node %s); Ctrl-] and Enter to leave\n", board, job, node)
	out := make(chan struct{})
	go func() {
		defer close(out)
		for {
			var f struct {
				Type string `json:"type"`
				Text string `json:"text"`
			}
			if err := conn.ReadJSON(&f); err != nil {
				return
			}
			switch f.Type {
			case "":
				fmt.Fprintln(stdout, f.Text)
			case "end":
				return
			}
		}
	}()
	// Read-only: what is typed is dropped; Ctrl-] leaves, the end of the
	// input does not.
	leave := make(chan struct{})
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := os.Stdin.Read(buf)
			if strings.IndexByte(string(buf[:n]), consoleEscape) >= 0 {
				close(leave)
				return
			}
			if err != nil {
				return
			}
		}
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	select {
	case <-out:
		fmt.Fprintf(stderr, "job %s ended\n", job)
		return exitOK
	case <-leave:
	case <-sigs:
	}
	_ = conn.Close()
	<-out
	return exitOK
}
