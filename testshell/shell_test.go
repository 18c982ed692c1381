package testshell_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/troupe-lab/troupe/boot"
	"github.com/troupe-lab/troupe/console"
	"github.com/troupe-lab/troupe/internal/lockedbuf"
	"github.com/troupe-lab/troupe/sim"
	"github.com/troupe-lab/troupe/testshell"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	waitTO  = 10 * time.Second        // for things that must happen
	shortTO = 500 * time.Millisecond  // for things that must not happen
	hangTO  = 1000 * time.Millisecond // for runs that hang while a known bug stands
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func ptr(x float64) *float64 { return &x }

// rig is a real simulated board, booted and logged in, with an initialised
// test shell on its console.
type rig struct {
	board *sim.Board
	con   *console.Console
	sh    *testshell.Shell
	raw   *lockedbuf.Buffer // every byte the console read
}

// troupeDir is $TROUPE_DIR on the host: the sim shell's TMPDIR is Root()/tmp.
func (r *rig) troupeDir() string { return filepath.Join(r.board.Root(), "tmp", "troupe") }

// newRig's Init is told that the sim board's terminal has echo off, as
// the board actor tells it (actors.EchoOffShell).
func newRig(t *testing.T) *rig {
	t.Helper()
	return newRigWith(t, nil, testshell.EchoOff)
}

// newRigWith is newRig with Init given opts, and the shell's console
// wrapped by wrap (if not nil).
func newRigWith(t *testing.T, wrap func(testshell.Console) testshell.Console, opts ...testshell.InitOption) *rig {
	t.Helper()
	b, err := sim.New(sim.Options{Name: "sim-t", Dir: t.TempDir()})
	require.NoError(t, err)
	// The shell needs the console and the console's OnLine needs the
	// shell: capture it through a variable, as actors/board.go does.
	var sh *testshell.Shell
	raw := &lockedbuf.Buffer{}
	con := console.New(b.Console(), console.Options{Raw: raw, OnLine: func(l string) { sh.Feed(l) }})
	var shCon testshell.Console = con
	if wrap != nil {
		shCon = wrap(con)
	}
	sh = testshell.New(shCon, nil)
	t.Cleanup(func() {
		// As actors/board.go releases a board: off, console, board.
		ctx, cancel := context.WithTimeout(context.Background(), waitTO)
		defer cancel()
		assert.NoError(t, b.Off(ctx))
		assert.NoError(t, con.Close())
		assert.NoError(t, b.Close())
	})
	require.NoError(t, boot.Boot(ctxT(t, waitTO), b, con, boot.DefaultPrompts()))
	require.NoError(t, sh.Init(ctxT(t, waitTO), opts...))
	return &rig{board: b, con: con, sh: sh, raw: raw}
}

// sentConsole records what is sent to a console.
type sentConsole struct {
	testshell.Console
	mu   sync.Mutex
	sent []string
}

func (c *sentConsole) Send(s string) error {
	c.mu.Lock()
	c.sent = append(c.sent, s)
	c.mu.Unlock()
	return c.Console.Send(s)
}

// TestProcessStarts: on a sim board that gets its helpers and test files
// put on it (as the board actor does), the shell's Init starts no process
// and a test run one, its script's shell. The board's shell is alone in a
// fresh PID namespace, where pids are handed out in order: the script's
// pid is the login shell's plus the processes started in between.
func TestProcessStarts(t *testing.T) {
	t.Parallel()
	b, err := sim.New(sim.Options{Name: "sim-p", Dir: t.TempDir()})
	require.NoError(t, err)
	var sh *testshell.Shell
	con := console.New(b.Console(), console.Options{OnLine: func(l string) { sh.Feed(l) }})
	sh = testshell.New(con, nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTO)
		defer cancel()
		assert.NoError(t, b.Off(ctx))
		assert.NoError(t, con.Close())
		assert.NoError(t, b.Close())
	})
	put := func(files map[string][]byte, mode fs.FileMode) error {
		under := map[string][]byte{}
		for n, data := range files {
			under[filepath.Join(testshell.TmpSubdir, n)] = data
		}
		return b.PutFiles(under, mode)
	}
	sh.PutFilesWith(put)
	require.NoError(t, boot.Boot(ctxT(t, waitTO), b, con, boot.DefaultPrompts()))
	helpers, err := testshell.Helpers()
	require.NoError(t, err)
	require.NoError(t, put(helpers, 0o755))
	require.NoError(t, sh.Init(ctxT(t, waitTO), testshell.EchoOff))
	out, err := sh.Run(ctxT(t, waitTO), testshell.Test{Name: "t",
		Script: `troupe-test-case started --result pass --measurement $(($$ - $PPID)) --units processes`})
	require.NoError(t, err)
	require.Len(t, out.Cases, 1)
	require.NotNil(t, out.Cases[0].Measurement)
	assert.Equal(t, 1.0, *out.Cases[0].Measurement, "processes started since the login: Init's and the test's")
}

// TestInitEchoOff: Init types "stty -echo" unless told that the shell's
// terminal has echo off already (EchoOff: a sim board's console), and then
// types the same set-up line without it. Either way the shell works, and
// on a sim board nothing typed is ever echoed back: its console shows no
// command line, Init's included.
func TestInitEchoOff(t *testing.T) {
	for _, echoOff := range []bool{true, false} {
		t.Run(fmt.Sprintf("echo off %v", echoOff), func(t *testing.T) {
			t.Parallel()
			rec := &sentConsole{}
			var opts []testshell.InitOption
			if echoOff {
				opts = append(opts, testshell.EchoOff)
			}
			r := newRigWith(t, func(c testshell.Console) testshell.Console {
				rec.Console = c
				return rec
			}, opts...)
			out := r.run(t, "troupe-test-case ok --result pass")
			assert.Equal(t, []testshell.Case{{Name: "ok", Result: "pass"}}, out.Cases)

			rec.mu.Lock()
			sent := slices.Clone(rec.sent)
			rec.mu.Unlock()
			require.NotEmpty(t, sent)
			assert.Contains(t, sent[0], "PS1=''", "the first line typed is Init's")
			assert.Equal(t, !echoOff, strings.Contains(sent[0], "stty -echo"), "Init typed %q", sent[0])
			if echoOff {
				assert.False(t, strings.Contains(strings.Join(sent, ""), "stty"), "no stty typed at all")
			}
			log := r.raw.String()
			assert.False(t, strings.Contains(log, "PS1=''"), "Init's line echoed:\n%s", log)
			assert.False(t, strings.Contains(log, "printf '<TROUPE_%s"), "a typed line echoed:\n%s", log)
		})
	}
}

func (r *rig) run(t *testing.T, script string, env ...[2]string) testshell.Outcome {
	t.Helper()
	out, err := r.sh.Run(ctxT(t, waitTO), testshell.Test{Name: "t", Script: script, Env: env})
	require.NoError(t, err)
	return out
}

func TestInitInstallsHelpers(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	for _, h := range []string{"troupe-test-case", "lava-test-case", "troupe-raise", "lava-test-raise"} {
		fi, err := os.Stat(filepath.Join(r.troupeDir(), "bin", h))
		require.NoError(t, err, h)
		assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm(), h)
	}
}

func TestExecExitStatus(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	tests := []struct {
		cmd  string
		want int
	}{
		{"true", 0},
		{"false", 1},
		{"(exit 42)", 42},
		{"sh -c 'exit 255'", 255},
		{"echo 'no newline at the end\\c'", 0},
		{"printf 'partial line'", 0},
	}
	for _, tc := range tests {
		t.Run(tc.cmd, func(t *testing.T) {
			code, err := r.sh.Exec(ctxT(t, waitTO), tc.cmd)
			require.NoError(t, err)
			assert.Equal(t, tc.want, code)
		})
	}
	t.Run("many in a row", func(t *testing.T) {
		ctx := ctxT(t, waitTO)
		for i := range 100 {
			code, err := r.sh.Exec(ctx, fmt.Sprintf("(exit %d)", i%7))
			require.NoError(t, err, "command %d", i)
			require.Equal(t, i%7, code, "command %d", i)
		}
	})
}

// TestExecSkipsOtherMarkers: an end marker of another command (an earlier
// one's, or one a test prints) before a command's own does not end it.
func TestExecSkipsOtherMarkers(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	code, err := r.sh.Exec(ctxT(t, waitTO), `printf '<TROUPE_%s %s %s>\n' END not-this-1 7; (exit 3)`)
	require.NoError(t, err)
	assert.Equal(t, 3, code, "the other marker's status was taken")
}

func TestWriteFiles(t *testing.T) {
	t.Parallel()
	r := newRig(t)

	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := make([]byte, 200<<10)
	_, _ = rand.Read(big)
	files := map[string][]byte{
		"all-bytes.bin":               all,
		"quotes.txt":                  []byte("it's \"quoted\"\n$HOME `id` $(id) \\n \\\nTROUPE_EOF\n'\n"),
		"no-newline.txt":              []byte("last line without newline"),
		"empty":                       {},
		"dir with space/my file.txt":  []byte("spaces\n"),
		"it's/a \"name\" $x `y`.txt":  []byte("odd name\n"),
		"deep/a/b/c/big.bin":          big,
		"crlf.txt":                    []byte("line1\r\nline2\r\n"),
		"leading-dash/-n":             []byte("-n\n"),
		"utf8/résumé ✓.txt":           []byte("héllo ✓\n"),
		"control-chars.bin":           []byte("\x03\x04\x1a\x1b[31m\x7f\x00"),
		"many-lines.txt":              bytes.Repeat([]byte("line\n"), 5000),
		"TROUPE_EOF":                  []byte("TROUPE_EOF\n"),
		"nested/TROUPE_EOF/TROUPE_EO": []byte("x"),
	}
	require.NoError(t, r.sh.WriteFiles(ctxT(t, waitTO), files, 0o640))
	for name, want := range files {
		p := filepath.Join(r.troupeDir(), filepath.FromSlash(name))
		got, err := os.ReadFile(p)
		require.NoError(t, err, name)
		assert.True(t, bytes.Equal(want, got), "%s: content differs (%d bytes written, %d read)", name, len(want), len(got))
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm(), name)
	}

	t.Run("overwrite and change mode", func(t *testing.T) {
		require.NoError(t, r.sh.WriteFiles(ctxT(t, waitTO), map[string][]byte{"quotes.txt": []byte("new\n")}, 0o700))
		p := filepath.Join(r.troupeDir(), "quotes.txt")
		got, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.Equal(t, "new\n", string(got))
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	})

	t.Run("failure is reported", func(t *testing.T) {
		// A regular file where a directory is needed.
		err := r.sh.WriteFiles(ctxT(t, waitTO), map[string][]byte{"empty/sub": []byte("x")}, 0o644)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "empty/sub")
		// The shell is still usable.
		code, err := r.sh.Exec(ctxT(t, waitTO), "true")
		require.NoError(t, err)
		assert.Equal(t, 0, code)
	})
}

// TestRunScriptShell: a test script runs as "sh run.sh" would run it: $0
// is its path and $# is 0; its shell is not interactive (no i or m in $-,
// set -e ends it at the first failing command, exit N is its status); it
// sees the login shell's environment, not its other variables; and
// TROUPE_TEST_PID (which troupe-raise kills) is the script's shell.
func TestRunScriptShell(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	code, err := r.sh.Exec(ctxT(t, waitTO), "troupe_login_only=set")
	require.NoError(t, err)
	require.Equal(t, 0, code)
	out := r.run(t, `
printf '%s' "$0" > "$TROUPE_DIR/sh-0"
printf '%s' "$#" > "$TROUPE_DIR/sh-argc"
printf '%s' "$-" > "$TROUPE_DIR/sh-flags"
printf '%s' "${troupe_login_only-unset}" > "$TROUPE_DIR/sh-login-var"
set -e
false
touch "$TROUPE_DIR/sh-after-false"
`)
	assert.Equal(t, 1, out.ExitCode, "set -e ended the script at false")
	assert.NoFileExists(t, filepath.Join(r.troupeDir(), "sh-after-false"))
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(r.troupeDir(), "sh-"+name))
		require.NoError(t, err, name)
		return string(b)
	}
	assert.Equal(t, "/tmp/troupe/tests/t/run.sh", read("0"), "$0")
	assert.Equal(t, "0", read("argc"), "$#")
	assert.NotContains(t, read("flags"), "i", "the script's shell is not interactive")
	assert.NotContains(t, read("flags"), "m", "the script's shell has no job control")
	assert.Equal(t, "unset", read("login-var"), "a variable of the login shell that is not exported")

	out = r.run(t, `kill -TERM "$TROUPE_TEST_PID"; touch "$TROUPE_DIR/sh-after-kill"; exit 0`)
	assert.Equal(t, 128+15, out.ExitCode, "killed by SIGTERM")
	assert.NoFileExists(t, filepath.Join(r.troupeDir(), "sh-after-kill"))

	assert.Equal(t, 7, r.run(t, "exit 7").ExitCode)
}

func TestRunEnv(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	env := [][2]string{
		{"GREETING", "hello world"},
		{"QUOTED", `it's a 'test' with "double" quotes`},
		{"SPECIAL", "$HOME `id` $(id) \\ ; & | * ?"},
		{"EMPTY", ""},
		{"MULTI", "line1\nline2"},
		{"ORDER", "first"},
		{"ORDER", "second"}, // later entries win
	}
	script := `
for v in GREETING QUOTED SPECIAL EMPTY MULTI ORDER TROUPE_DIR TROUPE_TEST_PID; do
	eval "printf '%s' \"\$$v\"" > "$TROUPE_DIR/env-$v"
done
printf '%s' "$$" > "$TROUPE_DIR/env-pid"
sh -c 'command -v troupe-test-case' > "$TROUPE_DIR/env-helper" # (the script's shell has it as an alias)
sh -c 'printf "%s" "$GREETING"' > "$TROUPE_DIR/env-exported"
`
	out := r.run(t, script, env...)
	require.Equal(t, 0, out.ExitCode)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(r.troupeDir(), "env-"+name))
		require.NoError(t, err, name)
		return string(b)
	}
	for _, kv := range []struct{ name, want string }{
		{"GREETING", "hello world"},
		{"QUOTED", `it's a 'test' with "double" quotes`},
		{"SPECIAL", "$HOME `id` $(id) \\ ; & | * ?"},
		{"EMPTY", ""},
		{"MULTI", "line1\nline2"},
		{"ORDER", "second"},
		{"TROUPE_DIR", "/tmp/troupe"}, // the board's /tmp is its root's tmp: r.troupeDir() on the host
		{"exported", "hello world"},
		{"helper", "/tmp/troupe/bin/troupe-test-case\n"},
	} {
		assert.Equal(t, kv.want, read(kv.name), kv.name)
	}
	assert.Equal(t, read("pid"), read("TROUPE_TEST_PID"), "TROUPE_TEST_PID is the script's own pid")
	_, err := strconv.Atoi(read("pid"))
	assert.NoError(t, err)

	t.Run("env does not leak into the next run", func(t *testing.T) {
		out := r.run(t, `[ -z "${GREETING+set}" ]`)
		assert.Equal(t, 0, out.ExitCode)
	})
}

func TestRunCollectsCases(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	script := `
troupe-test-case plain --result pass
troupe-test-case lat --result pass --measurement 12.5 --units ms
troupe-test-case thr --result fail --units MB/s --measurement 1e3
troupe-test-case skipped --result skip
troupe-test-case dunno --result unknown
troupe-test-case shell-ok --shell true
troupe-test-case shell-bad --shell sh -c 'exit 3'
troupe-test-case shell-args --shell test "a b" = "a b"
lava-test-case lava-pass --result pass
lava-test-case lava-meas --result fail --measurement -0.5 --units %
lava-test-case lava-shell --shell false
printf 'output without a newline'
troupe-test-case after-partial --result pass
printf 'inline <LAVA_SIGNAL_TESTCASE TEST_CASE_ID=inline RESULT=pass> and more\n'
echo "x" | troupe-test-case piped --shell grep -q x
`
	out := r.run(t, script)
	assert.Equal(t, 0, out.ExitCode)
	assert.Empty(t, out.Invalid)
	assert.Empty(t, out.Raised)
	assert.Equal(t, []testshell.Case{
		{Name: "plain", Result: "pass"},
		{Name: "lat", Result: "pass", Measurement: ptr(12.5), Units: "ms"},
		{Name: "thr", Result: "fail", Measurement: ptr(1000), Units: "MB/s"},
		{Name: "skipped", Result: "skip"},
		{Name: "dunno", Result: "unknown"},
		{Name: "shell-ok", Result: "pass"},
		{Name: "shell-bad", Result: "fail"},
		{Name: "shell-args", Result: "pass"},
		{Name: "lava-pass", Result: "pass"},
		{Name: "lava-meas", Result: "fail", Measurement: ptr(-0.5), Units: "%"},
		{Name: "lava-shell", Result: "fail"},
		{Name: "after-partial", Result: "pass"},
		{Name: "inline", Result: "pass"},
		{Name: "piped", Result: "pass"},
	}, out.Cases)
}

func TestRunMarkerAtEndWithoutNewline(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	// The last output of the script has no newline: the end marker lands on
	// the same console line as the result marker.
	for i := range 20 {
		out := r.run(t, `printf '<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=last RESULT=pass>'`)
		require.Equal(t, []testshell.Case{{Name: "last", Result: "pass"}}, out.Cases, "run %d", i)
	}
}

func TestRunExitStatus(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	tests := []struct {
		name   string
		script string
		want   int
	}{
		{"empty script", "", 0},
		{"true", "true", 0},
		{"false", "false", 1},
		{"exit 42", "exit 42", 42},
		{"last command wins", "false\ntrue", 0},
		{"set -e", "set -e\nfalse\nexit 0", 1},
		{"no trailing newline", "printf 'x'; exit 7", 7},
		{"syntax error", "if then fi", 2},
		{"killed", "kill -KILL $$", 137},
		{"exit in a function", "f() { exit 5; }\nf\nexit 0", 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := r.run(t, tc.script)
			assert.Equal(t, tc.want, out.ExitCode)
			assert.Empty(t, out.Cases)
		})
	}
}

func TestRunRaise(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	tests := []struct {
		name   string
		call   string
		raised string
	}{
		{"troupe-raise", `troupe-raise 'disk <on> fire'`, "disk [on] fire"},
		{"lava-test-raise", `lava-test-raise "network <down>" now`, "network [down] now"},
		{"no message", `troupe-raise`, "raised without a message"},
		{"newline in message", `troupe-raise "$(printf 'two\nlines')"`, "two lines"},
		{"marker-looking message", `troupe-raise '<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=x RESULT=pass>'`,
			"[LAVA_SIGNAL_TESTCASE TEST_CASE_ID=x RESULT=pass]"},
		{"from a function", "f() { troupe-raise inside; }\nf", "inside"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			after := filepath.Join(r.troupeDir(), "after-"+strings.ReplaceAll(tc.name, " ", "-"))
			script := "troupe-test-case before --result pass\n" + tc.call + "\n" +
				"troupe-test-case after --result pass\n" +
				"touch '" + after + "'\nexit 0\n"
			out := r.run(t, script)
			assert.Equal(t, tc.raised, out.Raised)
			assert.NotEqual(t, 0, out.ExitCode)
			assert.Equal(t, []testshell.Case{{Name: "before", Result: "pass"}}, out.Cases)
			assert.Empty(t, out.Invalid)
			assert.NoFileExists(t, after, "commands after the raise must not run")
		})
	}

	t.Run("first raise wins", func(t *testing.T) {
		out := r.run(t, `echo '<LAVA_SIGNAL_TESTRAISE first>'; echo '<LAVA_SIGNAL_TESTRAISE second>'`)
		assert.Equal(t, "first", out.Raised)
	})
}

func TestRunInvalidMarkers(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	tests := []struct {
		name string
		line string
	}{
		{"bad result", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=x RESULT=pas>"},
		{"missing result", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=x>"},
		{"missing id", "<LAVA_SIGNAL_TESTCASE RESULT=pass>"},
		{"bad measurement", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=x RESULT=pass MEASUREMENT=fast>"},
		{"unknown field", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=x RESULT=pass COLOR=red>"},
		{"repeated result", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=x RESULT=fail RESULT=pass>"},
		{"bad id", "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=x$y RESULT=pass>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := r.run(t, "echo '"+tc.line+"'\ntroupe-test-case good --result pass\n")
			assert.Equal(t, 0, out.ExitCode)
			assert.Equal(t, []testshell.Case{{Name: "good", Result: "pass"}}, out.Cases)
			require.Len(t, out.Invalid, 1)
			assert.Contains(t, out.Invalid[0], tc.line)
		})
	}
}

func TestRunHelperUsageErrors(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	tests := []struct {
		name string
		call string
	}{
		{"bad result word", `troupe-test-case x --result passed`},
		{"bad result word, lava", `lava-test-case x --result maybe`},
		{"name with space", `troupe-test-case 'bad name' --result pass`},
		{"name with marker chars", `troupe-test-case 'a>b' --result pass`},
		{"empty name", `troupe-test-case '' --result pass`},
		{"no result", `troupe-test-case x`},
		{"result without value", `troupe-test-case x --result`},
		{"unknown option", `troupe-test-case x --result pass --colour red`},
		{"bad measurement", `troupe-test-case x --result pass --measurement fast`},
		{"measurement without value", `troupe-test-case x --result pass --measurement`},
		{"bad units", `troupe-test-case x --result pass --measurement 1 --units 'm s'`},
		{"shell without command", `troupe-test-case x --shell`},
		{"no arguments", `troupe-test-case`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := r.run(t, tc.call)
			assert.Equal(t, 2, out.ExitCode)
			assert.Empty(t, out.Cases)
			assert.Empty(t, out.Invalid)
			assert.Empty(t, out.Raised)
		})
	}
}

func TestRunMarkersBelongToTheirRun(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	out := r.run(t, "troupe-test-case one --result pass\nlava-test-case two --result fail\necho '<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=x RESULT=pas>'")
	require.Len(t, out.Cases, 2)
	require.Len(t, out.Invalid, 1)

	// Markers printed outside of any run are nobody's.
	code, err := r.sh.Exec(ctxT(t, waitTO), `printf '<LAVA_SIGNAL_%s TEST_CASE_ID=stray RESULT=pass>\n' TESTCASE`)
	require.NoError(t, err)
	require.Equal(t, 0, code)

	out = r.run(t, "true")
	assert.Empty(t, out.Cases)
	assert.Empty(t, out.Invalid)
	assert.Empty(t, out.Raised)

	out = r.run(t, "troupe-raise stop")
	assert.Equal(t, "stop", out.Raised)
	out = r.run(t, "troupe-test-case three --result pass")
	assert.Empty(t, out.Raised)
	assert.Equal(t, []testshell.Case{{Name: "three", Result: "pass"}}, out.Cases)
}

// A process the script leaves running in the background prints markers
// while the next test runs; they must not be counted as the next test's
// results (they carry the first run's TROUPE_RUN).
func TestRunLeftoverBackgroundMarker(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	gate := filepath.Join(r.troupeDir(), "gate")
	done := filepath.Join(r.troupeDir(), "done")
	pid := filepath.Join(r.troupeDir(), "bg.pid")
	// The background job waits (bounded) for the gate, reports, and signals done.
	first := fmt.Sprintf(`(i=0; while [ ! -e '%[1]s' ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
troupe-test-case late --result pass; troupe-raise late; touch '%[2]s') &
echo $! > '%[3]s'
troupe-test-case first --result pass`, gate, done, pid)
	out := r.run(t, first)
	require.Equal(t, []testshell.Case{{Name: "first", Result: "pass"}}, out.Cases)

	// If the job is still alive, open the gate and wait (bounded) until it
	// has reported; exit 3 if it was killed when the first run ended.
	second := fmt.Sprintf(`kill -0 "$(cat '%[3]s')" 2>/dev/null || exit 3
touch '%[1]s'; i=0; while [ ! -e '%[2]s' ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
[ -e '%[2]s' ]`, gate, done, pid)
	out = r.run(t, second)
	assert.Contains(t, []int{0, 3}, out.ExitCode)
	assert.Empty(t, out.Cases)
	assert.Empty(t, out.Raised)
}

// Env values are typed into the shell on the command line, through the
// console's line discipline (canonical mode: at most 4095 characters a
// line, CR turned into LF, DEL and ^U editing the line).
func TestRunEnvThroughTheTTY(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		value string
		bug   bool // known to fail; may hang the shell
	}{
		{"tab", "a\tb", false},
		{"3000 bytes", strings.Repeat("x", 3000), false},
		{"5000 bytes", strings.Repeat("x", 5000), true},
		{"carriage return", "a\rb", true},
		{"DEL", "a\x7fb", true},
		{"^U", "a\x15b", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			d := waitTO
			if tc.bug {
				d = hangTO
			}
			out, err := r.sh.Run(ctxT(t, d), testshell.Test{
				Name:   "env",
				Script: `printf '%s' "$V" > "$TROUPE_DIR/v"`,
				Env:    [][2]string{{"V", tc.value}},
			})
			got, _ := os.ReadFile(filepath.Join(r.troupeDir(), "v"))
			require.NoError(t, err)
			assert.Equal(t, tc.value, string(got))
			assert.Equal(t, 0, out.ExitCode)
		})
	}
}

func trunc(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}

func TestRunScriptReadingStdin(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	out, err := r.sh.Run(ctxT(t, hangTO), testshell.Test{
		Name:   "stdin",
		Script: "read x\ncat >/dev/null\ntroupe-test-case after-read --result pass\n",
	})
	require.NoError(t, err)
	assert.Equal(t, []testshell.Case{{Name: "after-read", Result: "pass"}}, out.Cases)
	// The shell is still in step.
	code, err := r.sh.Exec(ctxT(t, waitTO), "(exit 3)")
	require.NoError(t, err)
	assert.Equal(t, 3, code)
}

func TestRunContextEnds(t *testing.T) {
	t.Parallel()
	t.Run("already canceled", func(t *testing.T) {
		t.Parallel()
		r := newRig(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		_, err := r.sh.Run(ctx, testshell.Test{Name: "canceled", Script: "troupe-test-case x --result pass"})
		require.Error(t, err)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Less(t, time.Since(start), time.Second)
	})
	t.Run("times out while the script runs", func(t *testing.T) {
		t.Parallel()
		r := newRig(t)
		ctx := ctxT(t, shortTO)
		start := time.Now()
		out, err := r.sh.Run(ctx, testshell.Test{Name: "slow", Script: "troupe-test-case started --result pass\nsleep 30"})
		require.Error(t, err)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "slow")
		assert.Less(t, time.Since(start), shortTO+time.Second)
		// What was reported before the timeout is kept.
		assert.Equal(t, []testshell.Case{{Name: "started", Result: "pass"}}, out.Cases)
	})
}

// TestInitUsesPutHelpers: helpers a backend put on the board with their
// stamp are not typed again (a changed helper with the right stamp stays as
// it is); with a wrong stamp Init types them all.
func TestInitUsesPutHelpers(t *testing.T) {
	r := newRig(t)
	files, err := testshell.Helpers()
	require.NoError(t, err)
	put := map[string][]byte{}
	for n, data := range files {
		put[filepath.Join(testshell.TmpSubdir, n)] = data
	}
	marked := append([]byte("# put, not typed\n"), files["bin/troupe-self"]...)
	put[filepath.Join(testshell.TmpSubdir, "bin", "troupe-self")] = marked
	require.NoError(t, r.board.PutFiles(put, 0o755))
	require.NoError(t, r.sh.Init(ctxT(t, waitTO)))
	got, err := os.ReadFile(filepath.Join(r.troupeDir(), "bin", "troupe-self"))
	require.NoError(t, err)
	assert.Equal(t, string(marked), string(got), "the stamp matched: nothing typed")

	put[filepath.Join(testshell.TmpSubdir, "helpers.sum")] = []byte("stale\n")
	require.NoError(t, r.board.PutFiles(put, 0o755))
	require.NoError(t, r.sh.Init(ctxT(t, waitTO)))
	got, err = os.ReadFile(filepath.Join(r.troupeDir(), "bin", "troupe-self"))
	require.NoError(t, err)
	assert.Equal(t, string(files["bin/troupe-self"]), string(got), "a wrong stamp: typed again")
	out := r.run(t, "troupe-test-case ok --result pass")
	assert.Equal(t, []testshell.Case{{Name: "ok", Result: "pass"}}, out.Cases)
}

func TestRunParsePattern(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	re := regexp.MustCompile(`^(?P<test_case_id>[^:]+): (?P<result>PASS|FAIL|SKIP|BOGUS)(?: (?P<measurement>\S+) (?P<units>\S+))?$`)
	script := `
echo 'boot/fs: PASS'
echo 'net: FAIL 12.5 ms'
echo 'disk: SKIP'
echo 'two words: PASS'
echo 'odd: BOGUS'
echo 'lat: PASS abc ms'
echo 'no match here'
lava-test-case marker --result pass
`
	out, err := r.sh.Run(ctxT(t, waitTO), testshell.Test{Name: "p", Script: script, Pattern: re,
		Fixup: map[string]string{"PASS": "pass", "FAIL": "fail", "SKIP": "skip"}})
	require.NoError(t, err)
	assert.Equal(t, []testshell.Case{
		{Name: "boot_fs", Result: "pass"},
		{Name: "net", Result: "fail", Measurement: ptr(12.5), Units: "ms"},
		{Name: "disk", Result: "skip"},
		{Name: "marker", Result: "pass"},
	}, out.Cases)
	require.Len(t, out.Invalid, 3)
	assert.Contains(t, out.Invalid[0], `invalid test case name "two words"`)
	assert.Contains(t, out.Invalid[1], `result "BOGUS"`)
	assert.Contains(t, out.Invalid[2], `measurement "abc"`)

	// The pattern belongs to its run only.
	out = r.run(t, "echo 'late: PASS'")
	assert.Empty(t, out.Cases)
}

// TestRunLAVAHelpers: lava-test-set names the set of the results recorded
// within it (markers and parse.pattern lines), lava-test-reference keeps a
// URL with a result, lava-test-case --shell evaluates a single word as
// LAVA's does (a pipe) and --output prints a file before the result.
func TestRunLAVAHelpers(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	script := `
lava-test-case before --result pass
lava-test-set start net-io
lava-test-case piped --shell "echo abc | grep -q b"
echo 'line: PASS'
lava-test-reference report --result fail --reference https://ci.example.org/report/7?a=b
lava-test-set stop
printf 'fromfile: PASS\n' > out.txt
lava-test-case after --result skip --output out.txt
lava-test-case words --shell test 1 = 2
lava-test-set start bad\;name || lava-test-case set-refused --result pass
lava-test-reference x --result pass --reference 'javascript:alert(1)' || lava-test-case ref-refused --result pass
`
	out, err := r.sh.Run(ctxT(t, waitTO), testshell.Test{Name: "h", Script: script,
		Pattern: regexp.MustCompile(`^(?P<test_case_id>\w+): (?P<result>PASS)$`), Fixup: map[string]string{"PASS": "pass"}})
	require.NoError(t, err)
	assert.Equal(t, 0, out.ExitCode)
	assert.Empty(t, out.Invalid)
	assert.Equal(t, []testshell.Case{
		{Name: "before", Result: "pass"},
		{Name: "piped", Result: "pass", Set: "net-io"},
		{Name: "line", Result: "pass", Set: "net-io"},
		{Name: "report", Result: "fail", Set: "net-io", Reference: "https://ci.example.org/report/7?a=b"},
		{Name: "fromfile", Result: "pass"},
		{Name: "after", Result: "skip"},
		{Name: "words", Result: "fail"},
		{Name: "set-refused", Result: "pass"},
		{Name: "ref-refused", Result: "pass"},
	}, out.Cases)

	// The set belongs to its run only.
	out = r.run(t, "lava-test-set start left-open\nlava-test-case a --result pass")
	assert.Equal(t, "left-open", out.Cases[0].Set)
	out = r.run(t, "lava-test-case b --result pass")
	assert.Equal(t, []testshell.Case{{Name: "b", Result: "pass"}}, out.Cases)
}

// TestShellCaseUnderSetE: an imported LAVA script runs under set -e (as
// LAVA's generated script does), and lava-test-case --shell records a
// failing command's result and goes on, every way a command is run (a
// program, a built-in, a word to evaluate, a state-changing built-in in
// its subshell); the next failing step still ends the script.
func TestShellCaseUnderSetE(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	out := r.run(t, `set -e
lava-test-case prog --shell grep -q nope /etc/hostname
lava-test-case builtin --shell test 1 = 2
lava-test-case word --shell false
lava-test-case evaluated --shell "false; true"
lava-test-case sub --shell cd /nonexistent
lava-test-case ok --shell true
false
lava-test-case never --result pass
`)
	assert.Equal(t, []testshell.Case{
		{Name: "prog", Result: "fail"},
		{Name: "builtin", Result: "fail"},
		{Name: "word", Result: "fail"},
		{Name: "evaluated", Result: "pass"},
		{Name: "sub", Result: "fail"},
		{Name: "ok", Result: "pass"},
	}, out.Cases)
	assert.Equal(t, 1, out.ExitCode, "the plain false ended the script")
}

// TestRunAttachments: lava-test-case-attach sends a file's bytes through
// the console, kept with the results; a file over MaxAttachment is
// announced, refused (reported invalid) and not sent.
func TestRunAttachments(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	data := make([]byte, 3000)
	_, err := rand.Read(data)
	require.NoError(t, err)
	dir := filepath.Join(r.board.Root(), "tmp", "att")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "dmesg.bin"), data, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".hidden log"), []byte("hi\n"), 0o644))
	script := `
lava-test-case-attach boot "$TMPDIR/att/dmesg.bin" application/octet-stream
lava-test-case-attach boot "$TMPDIR/att/.hidden log"
head -c 1048577 /dev/zero > big.bin
lava-test-case-attach boot big.bin
lava-test-case-attach boot missing.bin || lava-test-case missing-refused --result pass
lava-test-case boot --result pass
`
	out := r.run(t, script)
	assert.Equal(t, 0, out.ExitCode)
	assert.Equal(t, []testshell.Attachment{
		{Case: "boot", Name: "dmesg.bin", MimeType: "application/octet-stream", Data: data},
		{Case: "boot", Name: "_.hidden_log", Data: []byte("hi\n")},
	}, out.Attachments)
	require.Len(t, out.Invalid, 1)
	assert.Contains(t, out.Invalid[0], "1048577 bytes; at most 1048576 are kept")
	assert.Equal(t, []testshell.Case{{Name: "missing-refused", Result: "pass"}, {Name: "boot", Result: "pass"}}, out.Cases)
}

// TestRunQuotesAWholePanicLine: a kernel panic's line that reaches the
// console in two parts is quoted whole in the shell's death, not cut
// after its first part (the reason is in the rest).
func TestRunQuotesAWholePanicLine(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	_, err := r.sh.Run(ctxT(t, waitTO), testshell.Test{Name: "t",
		Script: "printf 'Kernel panic - not syncing:'; sleep 0.3; printf ' sysrq triggered\\n'; sleep 30"})
	require.ErrorIs(t, err, testshell.ErrShellDied)
	assert.Contains(t, err.Error(), `console shows "Kernel panic - not syncing: sysrq triggered"`)
}
