package testshell_test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHelpersWithoutTerminal: with no terminal (a shell with no
// controlling tty), the result helpers print their markers on stdout
// instead of failing: ":" with a failed redirection would end the shell.
func TestHelpersWithoutTerminal(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "log.txt")
	require.NoError(t, os.WriteFile(file, []byte("hi\n"), 0o644))
	sum := fmt.Sprintf("%x", sha256.Sum256([]byte("hi\n")))
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"troupe-test-case", "a", "--result", "pass"}, "\n<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass TROUPE_RUN=ab-1>\n", 0},
		{[]string{"troupe-test-set", "start", "s"}, "\n<LAVA_SIGNAL_TESTSET START s TROUPE_RUN=ab-1>\n", 0},
		{[]string{"troupe-test-set", "stop"}, "\n<LAVA_SIGNAL_TESTSET STOP TROUPE_RUN=ab-1>\n", 0},
		{[]string{"troupe-test-reference", "r", "--reference", "https://h/x", "--result", "fail"}, "\n<LAVA_SIGNAL_TESTREFERENCE r fail https://h/x TROUPE_RUN=ab-1>\n", 0},
		{[]string{"troupe-test-case-attach", "a", file, "text/plain"}, "\n<LAVA_SIGNAL_TESTATTACH a log.txt 3 " + sum + " text/plain TROUPE_RUN=ab-1>\naGkK\n<LAVA_SIGNAL_TESTATTACH_END>\n", 0},
		{[]string{"troupe-raise", "boom"}, "\n<LAVA_SIGNAL_TESTRAISE TROUPE_RUN=ab-1 boom>\n", 1},
	} {
		cmd := exec.Command("sh", append([]string{filepath.Join("helpers", tc.args[0])}, tc.args[1:]...)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "TROUPE_RUN=ab-1"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		out, err := cmd.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		assert.Equal(t, tc.code, code, "%v", tc.args)
		assert.Equal(t, tc.want, string(out), "%v", tc.args)
	}
}

// TestShellCaseInPlace: troupe-test-case --shell runs a program or one of
// the built-ins test, [, true, false and : as a command of the script's
// shell (no subshell: a process start less each; one word only when its
// evaluation is itself), and anything else (cd, a function of the script,
// a word to evaluate) in a subshell, so that no --shell command changes
// the script's directory or variables either way. Counted in a
// PID namespace of the test's own, where PIDs are given in order: the two
// in-place built-ins between two probes must start no process.
func TestShellCaseInPlace(t *testing.T) {
	script := `. helpers/troupe-calls
f() { v=changed; cd /; }
v=kept
cd "$HOME"
a=$(sh -c 'echo $$')
troupe_test_case t in1 --shell test 1 = 1 >/dev/null
troupe_test_case t in2 --shell true >/dev/null
troupe_test_case t in3 --shell : >/dev/null
b=$(sh -c 'echo $$')
troupe_test_case t sub --shell f >/dev/null
troupe_test_case t cd --shell cd / >/dev/null
c=$(sh -c 'echo $$')
troupe_test_case t prog --shell sh -c 'exit 0' >/dev/null
troupe_test_case t eval --shell 'v=changed' >/dev/null
for w in test '[' : grep sh /bin/true ./x; do troupe_alone "$w" || echo "not alone: $w"; done
for w in cd exit export set read f nosuchprogram ''; do troupe_alone "$w" && echo "alone: $w"; done
for w in true ./x.sh /bin/a-b_c+d; do troupe_word "$w" || echo "not a word: $w"; done
for w in 'v=1' 'a b' '$x' '~' '*' 'a;b' ''; do troupe_word "$w" && echo "a word: $w"; done
echo "in-place=$((b - a)) subshells=$((c - b)) v=$v pwd=$(pwd)"
`
	home := t.TempDir()
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "TROUPE_RUN=ab-1", "HOME=" + home}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid:      true,
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	// in-place: the second probe's PID follows the first's; subshells:
	// the function and cd each took one, then the probe.
	assert.Equal(t, fmt.Sprintf("in-place=1 subshells=3 v=kept pwd=%s\n", home), string(out))
}
