package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The command line through the binary: flags anywhere, "--", unknown
// flags, -h, version; and the live table on a terminal.

// fakeAPI is a troupe server API that answers the client commands and
// records what they asked.
type fakeAPI struct {
	url  string
	mu   sync.Mutex
	reqs []string // "METHOD PATH?QUERY auth=TOKEN"
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.reqs = append(f.reqs, fmt.Sprintf("%s %s auth=%s", r.Method, r.URL.RequestURI(), strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")))
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == "POST" && r.URL.Path == "/api/v1/jobs":
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"id": "41"}`)
		case r.URL.Path == "/api/v1/jobs":
			_, _ = io.WriteString(w, `[{"id": "7", "name": "seven", "status": "running", "submitted": "2026-01-02T03:04:05Z"}]`)
		case r.URL.Path == "/api/v1/jobs/7":
			_, _ = io.WriteString(w, `{"id": "7", "name": "seven", "status": "complete", "nodes": [], "tests": []}`)
		case r.URL.Path == "/api/v1/jobs/7/cancel":
			_, _ = io.WriteString(w, `{"id": "7", "name": "seven", "status": "canceled"}`)
		case r.URL.Path == "/api/v1/devices":
			_, _ = io.WriteString(w, `[{"name": "pi-0", "device_type": "rpi4", "backend": "hardware", "health": "good"}]`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// last is the last request the API got.
func (f *fakeAPI) last(t *testing.T) string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	require.NotEmpty(t, f.reqs)
	return f.reqs[len(f.reqs)-1]
}

// troupeIn runs the binary in dir (with TROUPE_SERVER and TROUPE_TOKEN
// cleared).
func troupeIn(t *testing.T, dir string, args ...string) runResult {
	t.Helper()
	return runTroupe(t, runLimit, dir, nil, args...)
}

// quickJob is a one-node job that passes two test cases, after pause
// seconds of sleep.
func quickJob(t *testing.T, pause int) string {
	t.Helper()
	return writeJob(t, fmt.Sprintf(`name = "quick"
[roles.a]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "t"
run = '''
echo "hello from $TROUPE_NODE"
troupe-test-case one --result pass
sleep %d
'''
`, pause))
}

// TestFlagsAfterArguments: every command takes its flags after its
// arguments as well as before.
func TestFlagsAfterArguments(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t)
	dir := t.TempDir()
	job := quickJob(t, 0)

	t.Run("run", func(t *testing.T) {
		t.Parallel()
		out := filepath.Join(t.TempDir(), "out")
		r := troupeIn(t, dir, "run", job, "--out", out, "-v")
		require.Equal(t, 0, r.code, r.stdout+r.stderr)
		assert.Contains(t, r.stdout, "results in "+out)
		assert.FileExists(t, filepath.Join(out, "results.json"))
		assert.Contains(t, r.stderr, "level=DEBUG", "-v after the file")
		assert.NotContains(t, r.stdout, "\x1b[", "piped: plain lines, no live table")
		assert.Regexp(t, `(?m)^\s*[\d.]+s\s+a-0\s+sim-0\s+boot$`, r.stdout, "piped: a line per phase")
	})
	t.Run("scenario", func(t *testing.T) {
		r := troupeIn(t, dir, "scenario", "../../scenarios/12-kernel-panic-mid-barrier.toml", "--seed", "minus-one")
		assert.Equal(t, 3, r.code, r.stdout+r.stderr)
		assert.Contains(t, r.stderr, `--seed "minus-one": not a whole number`, "--seed after the path is read")
	})
	t.Run("submit", func(t *testing.T) {
		r := troupeIn(t, dir, "submit", job, "--server", api.url, "--token", "tok-1")
		require.Equal(t, 0, r.code, r.stdout+r.stderr)
		assert.Equal(t, "job 41 submitted\n", r.stdout)
		assert.Regexp(t, `^POST /api/v1/jobs\?file=[^ ]*job\.toml&format=toml auth=tok-1$`, api.last(t))
	})
	t.Run("jobs", func(t *testing.T) {
		r := troupeIn(t, dir, "jobs", "--server", api.url, "--status", "running")
		require.Equal(t, 0, r.code, r.stdout+r.stderr)
		assert.Regexp(t, `(?m)^7\s+seven\s+running\s`, r.stdout)
		assert.Equal(t, "GET /api/v1/jobs?status=running auth=", api.last(t))
	})
	t.Run("jobs show", func(t *testing.T) {
		r := troupeIn(t, dir, "jobs", "show", "7", "--server", api.url, "--token", "tok-2")
		require.Equal(t, 0, r.code, r.stdout+r.stderr)
		assert.Contains(t, r.stdout, "job 7: seven\nstatus: complete\n")
		assert.Equal(t, "GET /api/v1/jobs/7 auth=tok-2", api.last(t))
	})
	t.Run("jobs cancel", func(t *testing.T) {
		r := troupeIn(t, dir, "jobs", "cancel", "7", "--server", api.url)
		require.Equal(t, 0, r.code, r.stdout+r.stderr)
		assert.Equal(t, "job 7 (seven) canceled\n", r.stdout)
		assert.Equal(t, "POST /api/v1/jobs/7/cancel auth=", api.last(t))
	})
	t.Run("devices", func(t *testing.T) {
		r := troupeIn(t, dir, "devices", "--server", api.url)
		require.Equal(t, 0, r.code, r.stdout+r.stderr)
		assert.Regexp(t, `(?m)^pi-0\s+rpi4\s+hardware\s+good`, r.stdout)
	})
	t.Run("simboard power", func(t *testing.T) {
		sock := fakePowerSocket(t)
		r := troupeIn(t, dir, "simboard", "power", sock, "status")
		require.Equal(t, 0, r.code, r.stdout+r.stderr)
		assert.Equal(t, "on\n", r.stdout)
	})
	// Commands whose only flag is -h: the help comes after the arguments.
	for _, args := range [][]string{
		{"validate", job, "-h"},
		{"import-lava", "../../examples/lava-multinode.yaml", "--help"},
		{"version", "--help"},
		{"serve", "--data", dir, "--help"},
	} {
		r := troupeIn(t, dir, args...)
		assert.Equal(t, 0, r.code, "%v: %s", args, r.stderr)
		assert.True(t, strings.HasPrefix(r.stdout, "usage: troupe "+args[0]), "%v: %s", args, r.stdout)
	}
}

// fakePowerSocket answers "on" to any command on a unix socket, as a
// troupe simboard's control socket does to "status".
func fakePowerSocket(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "power.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 64)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(buf); err == nil {
				_, _ = io.WriteString(c, "on\n")
			}
			_ = c.Close()
		}
	}()
	return sock
}

// TestDoubleDashEndsFlags: after "--" an argument that looks like a flag
// is an argument.
func TestDoubleDashEndsFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	body, err := os.ReadFile(quickJob(t, 0))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "-v.toml"), body, 0o644))

	r := troupeIn(t, dir, "validate", "--", "-v.toml")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "-v.toml: ok (job quick, 1 nodes)\n", r.stdout)
	r = troupeIn(t, dir, "validate", "-v.toml")
	assert.Equal(t, 3, r.code, "without --, -v.toml is a flag")
	assert.Contains(t, r.stderr, "flag provided but not defined: -v.toml")

	api := newFakeAPI(t)
	r = troupeIn(t, dir, "submit", "--server", api.url, "--", "-v.toml")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	assert.Regexp(t, `^POST /api/v1/jobs\?file=[^ ]*%2F-v\.toml&`, api.last(t))

	r = troupeIn(t, dir, "simboard", "power", "--", fakePowerSocket(t), "status")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "on\n", r.stdout)
}

// commandLines are a command line of every command, to which the tests
// add flags.
var commandLines = []struct {
	name string // of the usage
	args []string
}{
	{"run", []string{"run", "job.toml"}},
	{"validate", []string{"validate", "job.toml"}},
	{"import-lava", []string{"import-lava", "job.yaml"}},
	{"scenario", []string{"scenario", "scenarios/"}},
	{"simboard", []string{"simboard", "--control", "x.sock", "--tcp", "127.0.0.1:0"}},
	{"simboard power", []string{"simboard", "power", "x.sock", "on"}},
	{"serve", []string{"serve", "--addr", "127.0.0.1:0"}},
	{"submit", []string{"submit", "job.toml"}},
	{"jobs", []string{"jobs"}},
	{"jobs", []string{"jobs", "show", "7"}},
	{"jobs", []string{"jobs", "cancel", "7"}},
	{"devices", []string{"devices"}},
	{"version", []string{"version"}},
}

// TestUnknownFlag: exit 3 with the error and the command's usage; nothing
// runs.
func TestUnknownFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, c := range commandLines {
		for _, at := range []string{"before", "after"} {
			n := len(strings.Fields(c.name)) // the command's words
			args := append(append(append([]string{}, c.args[:n]...), "--bogus"), c.args[n:]...)
			if at == "after" {
				args = append(append([]string{}, c.args...), "--bogus")
			}
			r := troupeIn(t, dir, args...)
			assert.Equal(t, 3, r.code, "%v: %s", args, r.stdout+r.stderr)
			assert.Empty(t, r.stdout, "%v", args)
			assert.Regexp(t, `^troupe `+c.name+`: flag provided but not defined: -bogus\nusage: troupe `+c.name+`[ \n]`, r.stderr, "%v", args)
			assert.True(t, strings.HasSuffix(r.stderr, "\n"), "%v", args)
		}
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing ran: no results, no sockets")
}

// TestHelp: -h and --help of every command print its usage, flags and an
// example on stdout, ending with a newline, and exit 0.
func TestHelp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, c := range commandLines {
		for _, h := range []string{"-h", "--help"} {
			args := append(append([]string{}, c.args...), h)
			r := troupeIn(t, dir, args...)
			assert.Equal(t, 0, r.code, "%v: %s", args, r.stderr)
			assert.Empty(t, r.stderr, "%v", args)
			assert.Regexp(t, `^usage: troupe `+c.name+`[ \n]`, r.stdout, "%v", args)
			assert.Contains(t, r.stdout, "\n  -h, --help\n", "%v", args)
			assert.Regexp(t, `\nexample:\n  troupe `+c.args[0]+`\b.*\n$`, r.stdout, "%v: an example, then a newline", args)
		}
	}
	r := troupeIn(t, dir, "run", "--help")
	assert.True(t, strings.HasSuffix(r.stdout, "\n"), "run --help ends its last line")
	assert.Contains(t, r.stdout, "\n  --out string\n")
	assert.Contains(t, r.stdout, "\n  -v\n")
	h := troupeIn(t, dir, "help", "run")
	assert.Equal(t, 0, h.code)
	assert.Equal(t, r.stdout, h.stdout)
	for _, args := range [][]string{{"submit", "--help"}, {"jobs", "--bogus"}} {
		r := cli(t, []string{"TROUPE_TOKEN=s3cret-token"}, args...)
		assert.NotContains(t, r.stdout+r.stderr, "s3cret-token", "%v: the usage shows no secret", args)
		assert.Contains(t, r.stdout+r.stderr, "--token string")
	}
	top := troupeIn(t, dir, "--help")
	assert.Equal(t, 0, top.code)
	assert.Contains(t, top.stdout, "troupe version")
	assert.True(t, strings.HasSuffix(top.stdout, "\n"))
}

// TestVersion: the module, its version and the commit the binary was
// built from, as its build information has them.
func TestVersion(t *testing.T) {
	t.Parallel()
	r := troupeIn(t, t.TempDir(), "version")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `^troupe github\.com/troupe-lab/troupe \S+ \(commit [^)]+\) go1\.\d+\S*\n$`, r.stdout)

	info, err := exec.Command("go", "version", "-m", troupeBin).Output()
	require.NoError(t, err)
	if m := regexp.MustCompile(`(?m)^\s*build\s+vcs\.revision=(\S+)$`).FindSubmatch(info); m != nil {
		assert.Contains(t, r.stdout, "(commit "+string(m[1]), "the commit of the build")
	} else {
		assert.Contains(t, r.stdout, "(commit unknown)", "built without VCS information (GOFLAGS=-buildvcs=false)")
	}
}

func TestDescribeBuild(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/troupe-lab/troupe", Version: "v1.2.3"}}
	assert.Equal(t, "troupe github.com/troupe-lab/troupe v1.2.3 (commit unknown) go1.26.0", describeBuild(bi))
	bi.Settings = []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abc"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"}}
	bi.Main.Version = ""
	assert.Equal(t, "troupe github.com/troupe-lab/troupe (devel) (commit 0123abc, 2026-01-02T03:04:05Z, modified) go1.26.0", describeBuild(bi))
}

// onTerminal runs the binary with a pseudo-terminal as its stdin, stdout
// and stderr and returns its exit code and what it wrote (without the
// terminal's carriage returns).
func onTerminal(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(troupeBin, args...)
	cmd.Env = append(os.Environ(), "TERM=xterm")
	cmd.Env = append(cmd.Env, env...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	require.NoError(t, err)
	defer tty.Close()
	var out bytes.Buffer
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(&out, tty)
		copied <- err
	}()
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("troupe %v did not end", args)
	}
	select {
	case err := <-copied: // the terminal's end: EIO once the last writer closed it
		if err != nil && !errors.Is(err, syscall.EIO) {
			t.Fatalf("read terminal: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the terminal did not close after troupe exited")
	}
	return cmd.ProcessState.ExitCode(), strings.ReplaceAll(out.String(), "\r\n", "\n")
}

// redraws splits terminal output at each redraw of the table.
func redraws(out string) []string {
	return strings.Split(out, "\x1b[J")
}

// TestRunDrawsTableOnTerminal: on a terminal troupe run draws a table of
// the nodes, redrawn in place, with the test cases counted as they pass.
func TestRunDrawsTableOnTerminal(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "out")
	code, screen := onTerminal(t, nil, "run", quickJob(t, 3), "--out", out)
	require.Equal(t, 0, code, screen)
	fs := redraws(screen)
	require.Greater(t, len(fs), 2, "the table is redrawn: %q", screen)
	assert.Regexp(t, `\r\x1b\[\d+A$`, fs[0], "back up over the table, then clear")
	assert.Regexp(t, `(?m)^NODE\s+BOARD\s+PHASE\s+TIME\s+PASS\s+FAIL$`, screen)
	live := regexp.MustCompile(`(?m)^a-0\s+sim-0\s+test 't'\s+[\d.]+s\s+1\s+0$`)
	seen := false
	for _, f := range fs {
		seen = seen || live.MatchString(f)
	}
	assert.True(t, seen, "a frame shows the pass while the test still runs:\n%q", screen)
	last := fs[len(fs)-1]
	assert.Regexp(t, `(?m)^a-0\s+sim-0\s+complete\s+[\d.]+s\s+2\s+0$`, last, "the final counts (the case and the test)")
	assert.Contains(t, last, "job quick: complete", "the summary follows the table")
	assert.NotRegexp(t, `(?m)^\s*[\d.]+s\s+a-0\s+sim-0\s+boot$`, screen, "no phase lines: the table has the phases")
}

// TestSubmitFollowDrawsTableOnTerminal: troupe submit --follow on a
// terminal: the log scrolls above a live table of the job's nodes.
func TestSubmitFollowDrawsTableOnTerminal(t *testing.T) {
	t.Parallel()
	srv := startServe(t, "--lab", writeTemp(t, "lab.toml", serveLab), "--data", t.TempDir())
	code, screen := onTerminal(t, []string{"TROUPE_SERVER=" + srv.url, "TROUPE_TOKEN="}, "submit", quickJob(t, 4), "--follow")
	require.Equal(t, 0, code, screen)
	fs := redraws(screen)
	require.Greater(t, len(fs), 2, "the table is redrawn: %q", screen)
	assert.Regexp(t, `(?m)(^|\x1b\[J)\d\d:\d\d:\d\d\.\d{3} a-0 +\| hello from a-0$`, screen, "the log lines, above the table")
	live := regexp.MustCompile(`(?m)^a-0\s+sim-[ab]\s+test 't'\s+[\d.]+s\s+1\s+0$`)
	seen := false
	for _, f := range fs {
		seen = seen || live.MatchString(f)
	}
	assert.True(t, seen, "a frame shows the phase and the pass while the test runs:\n%q", screen)
	last := fs[len(fs)-1]
	assert.Regexp(t, `(?m)^a-0\s+sim-[ab]\s+complete\s+[\d.]+s\s+2\s+0$`, last)
	assert.Contains(t, last, "job quick: complete")
}
