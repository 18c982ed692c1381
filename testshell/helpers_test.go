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
