// Package testshell drives a logged-in POSIX shell on a board's console: it
// delivers files and test scripts through the console itself (the same way
// on simulated and real boards), runs them, detects their end and exit status
// through unique markers, and collects the result markers they print.
package testshell

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/troupe-lab/troupe/console"
	"github.com/troupe-lab/troupe/coordinator"
)

//go:embed helpers
var helpers embed.FS

// Console is what the shell needs of a board console.
type Console interface {
	Expect(ctx context.Context, re *regexp.Regexp) ([]string, error)
	Send(s string) error
}

// MultiNode answers the MultiNode calls a test script makes; Call blocks
// until the reply is due or ctx ends.
type MultiNode interface {
	Call(ctx context.Context, r coordinator.Request) (coordinator.Reply, error)
}

// Starter is a MultiNode that also takes a call without a goroutine
// waiting for it: Start hands r over and returns at once, and answer gets
// the reply (or why there is none) exactly once, later, from the
// coordinator's own goroutine or a timer's — it must not block. Calls of
// the side channel go this way (Serve: the reply is written without
// blocking), so that a barrier's release writes every member's reply in
// one pass, with no goroutine per call to start or wake.
type Starter interface {
	Start(r coordinator.Request, answer func(coordinator.Reply, error))
}

// Test is one test action to run on the board.
type Test struct {
	Name   string
	Script string
	Env    [][2]string       // exported before the script runs, in order
	Files  map[string][]byte // extra files for the helpers, relative to $TROUPE_DIR
	// Pattern, if set, makes every output line it matches a test case, as
	// LAVA's parse.pattern does: named groups test_case_id and result,
	// optionally measurement and units; Fixup maps result words.
	Pattern *regexp.Regexp
	Fixup   map[string]string
}

// ErrShellDied reports that the board's shell went away under a running
// test: a login prompt or a kernel panic appeared instead of its end marker.
var ErrShellDied = errors.New("shell died")

// Case is one result a test reported.
type Case struct {
	Name        string
	Result      string
	Measurement *float64
	Units       string
	Set         string // the test set it was reported in (lava-test-set), if any
	Reference   string // the URL lava-test-reference kept with it, if any
}

// Attachment is a file a test attached to a test case
// (lava-test-case-attach), checked against the size and SHA-256 the
// helper announced.
type Attachment struct {
	Case     string
	Name     string // the file's base name
	MimeType string // if the test gave one
	Data     []byte
}

// MaxRunAttachments bounds the bytes of all attachments of one run.
const MaxRunAttachments = 4 * MaxAttachment

// Outcome is what a finished test script left behind.
type Outcome struct {
	ExitCode    int
	Cases       []Case
	Attachments []Attachment
	Raised      string   // message of troupe-raise / lava-test-raise, if called
	Invalid     []string // malformed markers seen (never counted as results)
}

// Shell is one logged-in shell session on a board console.
type Shell struct {
	con   Console
	mn    MultiNode
	token string

	mu     sync.Mutex
	seq    int
	run    *Outcome        // collects markers while a test runs
	runID  string          // TROUPE_RUN of the running test
	runCtx context.Context // ends with the running test
	parse  *regexp.Regexp  // the running test's Pattern
	fixup  map[string]string
	set    string         // the running test's current test set
	attach *pending       // the attachment being received, if any
	kept   int            // bytes of attachments kept for the running test
	calls  sync.WaitGroup // MultiNode calls in flight
	put    func(files map[string][]byte, mode fs.FileMode) error
}

// PutFilesWith makes Run deliver a test's files with put (paths relative
// to $TROUPE_DIR) instead of typing them through the console: for boards
// that can take files directly (a sim board's sandbox). A put that fails
// falls back to the console.
func (s *Shell) PutFilesWith(put func(files map[string][]byte, mode fs.FileMode) error) {
	s.put = put
}

// New returns a shell session on con. Call Feed with every console line.
// mn answers MultiNode calls; nil makes every call fail.
func New(con Console, mn MultiNode) *Shell {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &Shell{con: con, mn: mn, token: hex.EncodeToString(b)}
}

// Feed hands the shell one line of console output; it must be called for
// every line, in order, before that text becomes visible to Expect.
func (s *Shell) Feed(line string) {
	if s.attaching(line) {
		return
	}
	if strings.Contains(line, "<LAVA_MULTI_NODE>") {
		s.multiNode(line)
		return
	}
	if !strings.Contains(line, "<LAVA_SIGNAL_") {
		s.pattern(line)
		return
	}
	ms, errs := ParseLine(line)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil {
		return
	}
	for _, err := range errs {
		s.run.Invalid = append(s.run.Invalid, err.Error())
	}
	for _, m := range ms {
		if m.Run != "" && m.Run != s.runID {
			continue // left behind by an earlier run, e.g. by its background process
		}
		switch m.Kind {
		case TestCase:
			s.run.Cases = append(s.run.Cases, Case{Name: m.Case, Result: m.Result, Measurement: m.Measurement, Units: m.Units, Set: s.set})
		case TestSet:
			s.set = m.Set
		case TestReference:
			s.run.Cases = append(s.run.Cases, Case{Name: m.Case, Result: m.Result, Reference: m.Reference, Set: s.set})
		case TestAttach:
			s.endAttach("interrupted by another attachment")
			s.attach = &pending{m: m}
		case TestRaise:
			if s.run.Raised == "" {
				s.run.Raised = m.Message
			}
		}
	}
}

// pattern records the test case a line matching the running test's
// Pattern reports, the way LAVA does: the result word through the fixup
// map, '/' in names replaced by '_', names with spaces skipped.
func (s *Shell) pattern(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil || s.parse == nil {
		return
	}
	m := s.parse.FindStringSubmatch(line)
	if m == nil {
		return
	}
	g := map[string]string{}
	for i, n := range s.parse.SubexpNames() {
		if n != "" && m[i] != "" {
			g[n] = m[i]
		}
	}
	name := strings.ReplaceAll(strings.TrimSpace(g["test_case_id"]), "/", "_")
	result := g["result"]
	if f, ok := s.fixup[result]; ok {
		result = f
	}
	c := Case{Name: name, Result: strings.ToLower(result), Units: g["units"], Set: s.set}
	if v, ok := g["measurement"]; ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			s.run.Invalid = append(s.run.Invalid, fmt.Sprintf("parse.pattern: case %q: measurement %q is not a number", name, v))
			return
		}
		c.Measurement = &f
	}
	switch {
	case name == "" || strings.ContainsAny(name, " \t"):
		s.run.Invalid = append(s.run.Invalid, fmt.Sprintf("parse.pattern: invalid test case name %q", name))
	case !validResult[c.Result]:
		s.run.Invalid = append(s.run.Invalid, fmt.Sprintf("parse.pattern: case %q: result %q is not pass, fail, skip or unknown (fixupdict maps words)", name, result))
	default:
		s.run.Cases = append(s.run.Cases, c)
	}
}

var validResult = map[string]bool{"pass": true, "fail": true, "skip": true, "unknown": true}

// multiNode answers a MultiNode request marker of the running test. The
// call runs in a goroutine of its own (it may block for minutes) and its
// reply is typed back into the console, where the helper reads it. A
// marker outside a run is ignored.
func (s *Shell) multiNode(line string) {
	s.request(line, false, false, func(k coordinator.Kind, r coordinator.Reply) { _ = s.con.Send(FormatReply(k, r) + "\n") }, func() {})
}

// request parses one MultiNode request line and answers it through reply,
// from a goroutine of its own unless the answer is known at once (or, if
// async and s.mn is a Starter, from the coordinator's goroutine: reply
// must then not block); done is called once reply will not be called any
// more. Outside a run a request
// is ignored (console) or refused (side channel, strict): on the console
// it may be an echo, on the side channel a caller waits for its answer.
func (s *Shell) request(line string, strict, async bool, reply func(coordinator.Kind, coordinator.Reply), done func()) {
	req, ok, err := ParseMultiNode(line)
	var now *coordinator.Reply // an answer known at once, sent after the lock is let go
	s.mu.Lock()
	switch {
	case !ok && strict:
		req.Kind, now = "", &coordinator.Reply{Err: "not a MultiNode request"}
	case !ok || (s.run == nil && !strict):
	case s.run == nil:
		now = &coordinator.Reply{Err: "no test is running"}
	case err != nil:
		s.run.Invalid = append(s.run.Invalid, err.Error())
		now = &coordinator.Reply{Err: err.Error()}
	default:
		ctx := s.runCtx
		s.calls.Add(1)
		s.mu.Unlock()
		if st, ok := s.mn.(Starter); ok && async {
			s.start(ctx, st, req, reply, done)
			return
		}
		go func() {
			defer s.calls.Done()
			defer done()
			var rep coordinator.Reply
			var err error
			if s.mn == nil {
				err = errors.New("no MultiNode coordinator for this board")
			} else {
				rep, err = s.mn.Call(ctx, req)
			}
			if err != nil {
				rep = coordinator.Reply{Err: fmt.Sprintf("%s '%s': %v", req.Kind, req.ID, err)}
			}
			if ctx.Err() == nil {
				reply(req.Kind, rep)
			}
		}()
		return
	}
	s.mu.Unlock()
	if now != nil {
		reply(req.Kind, *now)
	}
	done()
}

// start hands req to st; its answer is replied unless ctx (the run) has
// ended first, in which case the call ends without a reply when ctx ends,
// as a waiting goroutine's would. Nothing waits meanwhile: no goroutine,
// one context callback.
func (s *Shell) start(ctx context.Context, st Starter, req coordinator.Request, reply func(coordinator.Kind, coordinator.Reply), done func()) {
	var once atomic.Bool
	end := func() {
		done()
		s.calls.Done()
	}
	stop := context.AfterFunc(ctx, func() {
		if once.CompareAndSwap(false, true) {
			end()
		}
	})
	st.Start(req, func(rep coordinator.Reply, err error) {
		if !once.CompareAndSwap(false, true) {
			return
		}
		stop()
		if err != nil {
			rep = coordinator.Reply{Err: fmt.Sprintf("%s '%s': %v", req.Kind, req.ID, err)}
		}
		if ctx.Err() == nil {
			reply(req.Kind, rep)
		}
		end()
	})
}

// TmpSubdir is $TROUPE_DIR relative to the board shell's $TMPDIR (/tmp
// without one).
const TmpSubdir = "troupe"

// sumFile is the stamp of the installed helpers, relative to $TROUPE_DIR.
const sumFile = "helpers.sum"

// Helpers returns the helper files as Init installs them, by path relative
// to $TROUPE_DIR, with their stamp. A backend that can put files on its
// board without the console puts them in $TMPDIR/TmpSubdir before Init:
// Init finds the stamp and types nothing.
var Helpers = sync.OnceValues(func() (map[string][]byte, error) {
	files := map[string][]byte{}
	err := fs.WalkDir(helpers, "helpers", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := helpers.ReadFile(p)
		files["bin/"+path.Base(p)] = data
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read helpers: %w", err)
	}
	names := slices.Sorted(maps.Keys(files))
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s %d\n", n, len(files[n]))
		h.Write(files[n])
	}
	files[sumFile] = []byte(hex.EncodeToString(h.Sum(nil)) + "\n")
	return files, nil
})

// HelpersUnderTmp is Helpers by path relative to the board shell's
// $TMPDIR (under TmpSubdir), made once: what a backend that can put files
// on its board, or boot with them, is given. It is only read.
var HelpersUnderTmp = sync.OnceValues(func() (map[string][]byte, error) {
	files, err := Helpers()
	if err != nil {
		return nil, err
	}
	under := make(map[string][]byte, len(files))
	for n, data := range files {
		under[path.Join(TmpSubdir, n)] = data
	}
	return under, nil
})

// InitOption tells Init something about the board's shell.
type InitOption func(*initConfig)

type initConfig struct {
	echoOff bool
	mnPort  string
}

// EchoOff: the shell's terminal has echo off already (a sim board's
// console: troupe owns the terminal and turns echo off after the login,
// as a getty or an agent could). Init then starts no stty; without it,
// Init turns echo off with "stty -echo", the way every real board's
// shell needs it.
func EchoOff(c *initConfig) { c.echoOff = true }

// MultiNodePort: the board may have a MultiNode side channel as a
// virtio-serial port of that name (a QEMU board's: /dev/vportNpM, its name
// in /sys/class/virtio-ports/vportNpM/name). If the guest has it, Init
// opens it as the helpers' descriptor, $TROUPE_MN_FD (8), for the shell
// and all it starts, and names it in $TROUPE_MN_DEV (the helpers check
// that descriptor 8 is still that device); if not, the helpers use the
// console. Built-ins only: no process is started. A name that is not
// letters, digits, '.', '_' or '-' is ignored.
func MultiNodePort(name string) InitOption {
	return func(c *initConfig) {
		if portNameRE.MatchString(name) {
			c.mnPort = name
		}
	}
}

var portNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// openPort is the shell code that opens the side channel's port named %s.
const openPort = `for p in /sys/class/virtio-ports/*; do n=; read -r n 2>/dev/null <"$p/name"; ` +
	`[ "$n" = %s ] && [ -c "/dev/${p##*/}" ] || continue; TROUPE_MN_DEV=/dev/${p##*/}; ` +
	`exec 8<>"$TROUPE_MN_DEV" && TROUPE_MN_FD=8 && export TROUPE_MN_FD TROUPE_MN_DEV; break; done; unset p n; `

// Init prepares a freshly logged-in shell: no echo, no prompts, the
// MultiNode side channel's port opened (MultiNodePort), and the troupe
// helpers installed in $TROUPE_DIR/bin — typed through the console
// unless their stamp shows them there already (put there by the backend,
// or by an earlier boot of the same board). With the stamp there, Init
// starts one program (stty), and none on a terminal with echo off
// already (EchoOff): every program start is a few milliseconds of a
// job's boot.
func (s *Shell) Init(ctx context.Context, opts ...InitOption) error {
	files, err := Helpers()
	if err != nil {
		return err
	}
	var c initConfig
	for _, o := range opts {
		o(&c)
	}
	cmd := ""
	if !c.echoOff {
		cmd = "stty -echo 2>/dev/null; "
	}
	if c.mnPort != "" {
		cmd += fmt.Sprintf(openPort, c.mnPort)
	}
	sum := strings.TrimSpace(string(files[sumFile]))
	code, err := s.Exec(ctx, cmd+`PS1=''; PS2=''; TROUPE_DIR="${TMPDIR:-/tmp}/`+TmpSubdir+`"; export TROUPE_DIR; `+
		`h=; read -r h 2>/dev/null <"$TROUPE_DIR/`+sumFile+`"; [ "$h" = `+sum+` ]`)
	if err != nil {
		return fmt.Errorf("init shell: %w", err)
	}
	if code == 0 {
		return nil
	}
	if err := s.WriteFiles(ctx, files, 0o755); err != nil {
		return fmt.Errorf("install helpers: %w", err)
	}
	return nil
}

// Exec runs one command line in the shell and returns its exit status. Its
// last line must not end in '&' or a comment.
func (s *Shell) Exec(ctx context.Context, cmd string) (int, error) {
	return s.exec(ctx, cmd, false)
}

// diedRE matches what a console shows when the shell under a command went
// away: a fresh login prompt, or a kernel panic.
const diedRE = `|(\S+ login: ?\z|` + console.KernelPanic + `)`

// endRE matches a command's end marker (its id, its exit status), and
// endOrDiedRE that or a console whose shell went away. Compiled once: a
// pattern per command cost a board's boot and tests a compile each. The
// pattern includes the newline: every line before the marker (result
// markers without a newline of their own too) has been fed.
var (
	endRE       = regexp.MustCompile(`<TROUPE_END (\S+) (\d+)>\n`)
	endOrDiedRE = regexp.MustCompile(`<TROUPE_END (\S+) (\d+)>\n` + diedRE)
)

func (s *Shell) exec(ctx context.Context, cmd string, watchDeath bool) (int, error) {
	s.mu.Lock()
	s.seq++
	id := fmt.Sprintf("%s-%d", s.token, s.seq)
	s.mu.Unlock()
	// The end marker is built by printf, so that an echo of the typed
	// command can never match it. It is on the command's last line: a
	// test script reading /dev/tty must never find it waiting there.
	line := fmt.Sprintf("%s; printf '<TROUPE_%%s %%s %%s>\\n' END %s \"$?\"\n", cmd, id)
	end := endRE
	if watchDeath {
		end = endOrDiedRE
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := s.con.Send(line); err != nil {
		return 0, fmt.Errorf("send command: %w", err)
	}
	for {
		m, err := s.con.Expect(ctx, end)
		if err != nil {
			return 0, fmt.Errorf("wait for end of command: %w", err)
		}
		if len(m) > 3 && m[3] != "" {
			return 0, fmt.Errorf("%w: console shows %q", ErrShellDied, strings.TrimSpace(m[3]))
		}
		if m[1] != id {
			continue // an earlier command's marker: not this one's end
		}
		code, err := strconv.Atoi(m[2])
		if err != nil {
			return 0, fmt.Errorf("exit status %q: %w", m[2], err)
		}
		return code, nil
	}
}

// WriteFiles writes files (paths relative to $TROUPE_DIR) on the board
// through the console, base64-encoded in here-documents, in one round trip.
func (s *Shell) WriteFiles(ctx context.Context, files map[string][]byte, mode uint32) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	// One mkdir and one chmod for all files, one base64 per file: every
	// process started costs time on a small board.
	dirs := map[string]bool{}
	var mkdir, chmod []string
	for _, n := range names {
		if d := path.Dir(n); d != "." && !dirs[d] {
			dirs[d] = true
			mkdir = append(mkdir, `"$TROUPE_DIR"/`+quote(d))
		}
		chmod = append(chmod, `"$TROUPE_DIR"/`+quote(n))
	}
	var b strings.Builder
	b.WriteString("(set -e\n")
	if len(mkdir) > 0 {
		fmt.Fprintf(&b, "mkdir -p %s\n", strings.Join(mkdir, " "))
	}
	// Replaced, never written in place: a file there may be a read-only
	// link to a copy shared between boards (sim.PutFiles).
	fmt.Fprintf(&b, "rm -f %s\n", strings.Join(chmod, " "))
	for i, n := range names {
		fmt.Fprintf(&b, "base64 -d > %s <<'TROUPE_EOF'\n", chmod[i])
		enc := base64.StdEncoding.EncodeToString(files[n])
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\nTROUPE_EOF\n")
	}
	fmt.Fprintf(&b, "chmod %o %s\n)", mode, strings.Join(chmod, " "))
	code, err := s.Exec(ctx, b.String())
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("writing %s failed with exit status %d", strings.Join(names, ", "), code)
	}
	return nil
}

// Run delivers t's script, runs it with t's environment and the helpers on
// PATH, and returns its exit status and the markers it printed.
func (s *Shell) Run(ctx context.Context, t Test) (Outcome, error) {
	dir := "tests/" + t.Name + "/"
	var env strings.Builder
	for _, kv := range t.Env {
		if !envNameRE.MatchString(kv[0]) {
			return Outcome{}, fmt.Errorf("run test %s: invalid environment variable name %q", t.Name, kv[0])
		}
		fmt.Fprintf(&env, "%s=%s; export %s\n", kv[0], quote(kv[1]), kv[0])
	}
	// The environment travels as a file like the script: values are never
	// typed through the terminal's line editing.
	files := map[string][]byte{dir + "run.sh": []byte(t.Script), dir + "env": []byte(env.String())}
	for n, b := range t.Files {
		files[n] = b
	}
	// A group file of a 1000-node job is 30 KB for every node: typed
	// through each console, the job's set-up grows with the square of its size.
	if s.put == nil || s.put(files, 0o755) != nil {
		if err := s.WriteFiles(ctx, files, 0o755); err != nil {
			return Outcome{}, fmt.Errorf("deliver test %s: %w", t.Name, err)
		}
	}
	// Every run has a token of its own (TROUPE_RUN), which the helpers put
	// in their markers: a marker of an earlier run (printed by a process
	// that run left in the background) is never counted as this run's.
	s.mu.Lock()
	s.seq++
	runID := fmt.Sprintf("%s-%d", s.token, s.seq)
	s.mu.Unlock()
	// The script runs in a shell of its own (sh -c, as "sh run.sh" would:
	// $0 is the script's path, $# is 0, not interactive, only the
	// environment of the login shell) with its stdin closed, so it can
	// never eat what is typed next; MultiNode helpers talk to their side
	// channel or /dev/tty themselves. That shell first sources the test's
	// env file, then troupe-calls (the MultiNode helpers as aliases: no
	// program start per call). It is a simple command of the login shell:
	// dash starts it with vfork and exec, without the fork of a subshell
	// (a copy of the shell's page tables per test).
	cmd := fmt.Sprintf(`sh -c '. "${0%%/*}/env"; PATH="$TROUPE_DIR/bin:$PATH"; TROUPE_RUN=%s; TROUPE_TEST_PID=$$; export PATH TROUPE_RUN TROUPE_TEST_PID; . "$TROUPE_DIR/bin/troupe-calls"; . "$0"' "$TROUPE_DIR"/%srun.sh </dev/null`,
		runID, quote(dir))

	runCtx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.run, s.runCtx, s.runID = &Outcome{}, runCtx, runID
	s.parse, s.fixup = t.Pattern, t.Fixup
	s.set, s.attach, s.kept = "", nil, 0
	s.mu.Unlock()
	code, err := s.exec(ctx, cmd, true)
	s.mu.Lock()
	s.endAttach("the test ended before its end")
	out := *s.run
	s.run, s.runCtx, s.runID = nil, nil, "" // no new MultiNode calls from here on
	s.parse, s.fixup = nil, nil
	s.mu.Unlock()
	cancel()
	s.calls.Wait()
	out.ExitCode = code
	if err != nil {
		return out, fmt.Errorf("run test %s: %w", t.Name, err)
	}
	return out, nil
}

// pending is an attachment being received: the base64 lines between its
// marker and <LAVA_SIGNAL_TESTATTACH_END>.
type pending struct {
	m   Marker
	b64 strings.Builder
	bad string // why it will not be kept; its lines are still consumed
}

const attachEnd = "<LAVA_SIGNAL_TESTATTACH_END>"

// attaching consumes line if it belongs to the attachment being received.
// A line with another marker interrupts it (and is not consumed): a
// damaged attachment is reported, never kept.
func (s *Shell) attaching(line string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.attach
	if p == nil {
		return false
	}
	if strings.Contains(line, attachEnd) {
		s.finishAttach()
		return true
	}
	if strings.Contains(line, "<") {
		s.endAttach("interrupted by " + truncate(line, 80))
		return false
	}
	chunk := strings.TrimSpace(line)
	switch {
	case p.bad != "":
	case strings.Trim(chunk, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != "":
		p.bad = fmt.Sprintf("a line that is not base64: %s", truncate(chunk, 80))
	case int64(p.b64.Len()+len(chunk)) > int64(base64.StdEncoding.EncodedLen(int(p.m.Size))):
		p.bad = fmt.Sprintf("more than the %d bytes announced", p.m.Size)
	default:
		p.b64.WriteString(chunk)
	}
	return true
}

// finishAttach checks the attachment received and keeps it.
func (s *Shell) finishAttach() {
	p := s.attach
	s.attach = nil
	if p.bad != "" {
		s.badAttach(p, p.bad)
		return
	}
	data, err := base64.StdEncoding.DecodeString(p.b64.String())
	switch {
	case err != nil:
		s.badAttach(p, fmt.Sprintf("not base64: %v", err))
	case int64(len(data)) != p.m.Size:
		s.badAttach(p, fmt.Sprintf("%d bytes received, %d announced", len(data), p.m.Size))
	case p.m.SHA256 != "" && fmt.Sprintf("%x", sha256.Sum256(data)) != p.m.SHA256:
		s.badAttach(p, "SHA-256 mismatch")
	case s.kept+len(data) > MaxRunAttachments:
		s.badAttach(p, fmt.Sprintf("the test's attachments exceed %d bytes", MaxRunAttachments))
	default:
		s.kept += len(data)
		s.run.Attachments = append(s.run.Attachments, Attachment{Case: p.m.Case, Name: p.m.File, MimeType: p.m.MimeType, Data: data})
	}
}

// endAttach drops the attachment being received, if any, as damaged.
func (s *Shell) endAttach(why string) {
	if s.attach != nil {
		s.badAttach(s.attach, why)
		s.attach = nil
	}
}

func (s *Shell) badAttach(p *pending, why string) {
	if s.run != nil {
		s.run.Invalid = append(s.run.Invalid, fmt.Sprintf("attachment %s of case %s not kept: %s", p.m.File, p.m.Case, why))
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// quote makes s one single-quoted shell word.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
