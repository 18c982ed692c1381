package lava_test

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lava"
)

// runScript imports a single-node job whose one inline test definition has
// the given install and run steps, and runs its script with sh in a fresh
// directory: its output and exit status.
func runScript(t *testing.T, install, run []string) (string, int) {
	t.Helper()
	yamlList := func(steps []string) string {
		var b strings.Builder
		for _, s := range steps {
			b.WriteString("\n          - " + quoteYAML(s))
		}
		return b.String()
	}
	inst := ""
	if install != nil {
		inst = "\n        install:\n          steps:" + yamlList(install)
	}
	data := `job_name: steps
device_type: qemu
actions:
- boot: {method: qemu, prompts: ['# ']}
- test:
    definitions:
    - from: inline
      name: steps
      path: inline/steps.yaml
      repository:
        metadata: {name: steps, format: Lava-Test Test Definition 1.0}` + inst + `
        run:
          steps:` + yamlList(run) + "\n"
	j, err := lava.Import("job.yaml", []byte(data))
	require.NoError(t, err, data)
	script := j.Actions[len(j.Actions)-1].Run
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return string(out), code
}

func quoteYAML(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// TestStepsAsLAVA: the steps of a test definition run as LAVA's
// lava-test-runner runs them: install.steps as install.sh (no -e: only the
// last step's status counts; when it fails, run.steps are skipped), then
// run.steps as run.sh under sh -e (the first failing step ends the test).
func TestStepsAsLAVA(t *testing.T) {
	out, code := runScript(t, nil, []string{"echo one", "false", "echo two"})
	assert.Equal(t, 1, code)
	assert.Equal(t, "one\n", out, "the first failing run step ends the test")

	out, code = runScript(t, nil, []string{"echo one", "false || true", "lava_missing_cmd_1 2>/dev/null || echo tolerated", "echo two"})
	assert.Equal(t, 0, code)
	assert.Equal(t, "one\ntolerated\ntwo\n", out, "|| true keeps a step from failing the test, as LAVA's docs say")

	out, code = runScript(t, []string{"echo inst1", "false", "echo inst2"}, []string{"echo run"})
	assert.Equal(t, 0, code)
	assert.Equal(t, "inst1\ninst2\nrun\n", out, "an install step that fails before the last does not stop install.sh")

	out, code = runScript(t, []string{"echo inst1", "exit 3"}, []string{"echo run"})
	assert.Equal(t, 1, code)
	assert.Equal(t, "inst1\ntroupe: install.steps failed (exit status 3): run.steps skipped, as LAVA skips them\n", out)

	out, code = runScript(t, []string{"x=1"}, []string{`echo "x=${x:-unset}"`})
	assert.Equal(t, 0, code)
	assert.Equal(t, "x=unset\n", out, "install.sh is a script of its own: its variables do not reach run.sh")
}

// TestStepsCacheFile: the LAVA cache file path in steps follows
// $LAVA_MULTI_NODE_CACHE (a simulated board keeps it in its sandbox).
func TestStepsCacheFile(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache.txt")
	require.NoError(t, os.WriteFile(cache, []byte("1:ip=10.0.0.9\n"), 0o644))
	t.Setenv("LAVA_MULTI_NODE_CACHE", cache)
	out, code := runScript(t, []string{"cut -d = -f 2 /tmp/lava_multi_node_cache.txt"}, []string{"cut -d = -f 2 /tmp/lava_multi_node_cache.txt"})
	assert.Equal(t, 0, code)
	assert.Equal(t, "10.0.0.9\n10.0.0.9\n", out)
}

// TestStepsPositionalEscaped: as LAVA writes run.sh, $1, $2 ... in a step
// that hands a command to a helper (--shell, --cmd) reach the helper
// unexpanded, so lava-test-case x --shell "... awk '{print $2}'" works;
// in other steps they are the script's own.
func TestStepsPositionalEscaped(t *testing.T) {
	j, err := lava.Import("job.yaml", []byte(`job_name: pos
device_type: qemu
actions:
- boot: {method: qemu, prompts: ['# ']}
- test:
    definitions:
    - from: inline
      name: pos
      path: inline/pos.yaml
      repository:
        metadata: {name: pos}
        run:
          steps:
          - lava-test-case two --shell "echo a b | awk '{print $2}' | grep -qx b"
          - echo "$1 $10"
`))
	require.NoError(t, err)
	run := j.Actions[1].Run
	assert.Contains(t, run, `lava-test-case two --shell "echo a b | awk '{print \$2}' | grep -qx b"`)
	assert.Contains(t, run, "\necho \"$1 $10\"")

	// Run as the board would: the helper gets the text with $2 and
	// evaluates it.
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.MkdirAll(bin, 0o755))
	helper, err := os.ReadFile("../testshell/helpers/troupe-test-case")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(bin, "lava-test-case"), helper, 0o755))
	for _, f := range []string{"troupe-calls", "troupe-programs"} { // the helper's code, sourced
		data, err := os.ReadFile("../testshell/helpers/" + f)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(bin, f), data, 0o644))
	}
	cmd := exec.Command("sh", "-c", run)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=two RESULT=pass>")
}

// TestGitDefinitionDeliversWhatItNeeds: a from: git definition in a
// repository too big to type through a console (as Linaro's
// test-definitions) is delivered with its own directory and the files
// those name by relative paths (a library its script sources, a script a
// step runs), transitively; nothing else. A definition whose own
// directory is too big is refused, saying so.
func TestGitDefinitionDeliversWhatItNeeds(t *testing.T) {
	base := t.TempDir()
	mirror := filepath.Join(base, "mirror")
	big := make([]byte, lava.MaxDeliveredRepo)
	_, err := rand.Read(big)
	require.NoError(t, err)
	gitRepo(t, filepath.Join(mirror, "test-definitions.git"), map[string]string{
		"automated/linux/smoke/smoke.yaml": `metadata: {name: smoke}
run:
  steps:
  - cd ./automated/linux/smoke/
  - ./smoke.sh
  - ../../utils/send.sh ./output/result.txt
`,
		"automated/linux/smoke/smoke.sh": "#!/bin/sh\nTEST_DIR=$(dirname \"$(realpath \"$0\")\")\n. \"${TEST_DIR}/../../lib/sh-test-lib\"\nmkdir -p output\nlib_hello > output/result.txt\n",
		"automated/lib/sh-test-lib":      "lib_hello() { . \"${TEST_DIR}/../../lib/more-lib\"; more_hello; }\n",
		"automated/lib/more-lib":         "more_hello() { echo pass-from-lib; }\n",
		"automated/utils/send.sh":        "#!/bin/sh\ncat \"$1\"\n",
		"automated/linux/other/bin/blob": string(big),
		"automated/linux/huge/huge.yaml": "run: {steps: [true]}\n",
		"automated/linux/huge/data.bin":  string(big),
	})
	opts := lava.Options{
		Repos:  &lava.Repos{Dir: filepath.Join(base, "cache"), Mirrors: []lava.Mirror{{Prefix: "https://git.example.org/", Dir: mirror}}, Offline: true},
		Images: base,
	}
	job := func(p string) string {
		return `job_name: td
device_type: qemu
actions:
- boot: {method: qemu, prompts: ['# ']}
- test:
    definitions:
    - {from: git, name: smoke, repository: https://git.example.org/test-definitions.git, path: ` + p + "}\n"
	}
	j, err := lava.ImportWith("job.yaml", []byte(job("automated/linux/smoke/smoke.yaml")), opts)
	require.NoError(t, err)
	script := j.Actions[1].Run
	assert.Less(t, len(script), 16<<10, "the big files are not delivered")
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "pass-from-lib\n", string(out))

	_, err = lava.ImportWith("job.yaml", []byte(job("automated/linux/huge/huge.yaml")), opts)
	assert.ErrorContains(t, err, "the files automated/linux/huge/huge.yaml needs (its directory and the files they name) are more than")
}
