package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestValidateKinds: troupe validate tells jobs, labs and scenarios apart
// by their content and checks each with its own parser.
func TestValidateKinds(t *testing.T) {
	t.Parallel()
	labs, err := filepath.Glob("../../examples/labs/*.toml")
	require.NoError(t, err)
	require.NotEmpty(t, labs)
	scenarios, err := filepath.Glob("../../scenarios/*.toml")
	require.NoError(t, err)
	require.NotEmpty(t, scenarios)
	files := append(append([]string{"../../examples/hello-multinode.toml", "../../examples/lava-multinode.yaml"}, labs...), scenarios...)
	res := troupe(t, append([]string{"validate"}, files...)...)
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "examples/hello-multinode.toml: ok (job ")
	assert.Contains(t, res.stdout, "examples/lava-multinode.yaml: ok (job ")
	for _, l := range labs {
		assert.Contains(t, res.stdout, l+": ok (lab, ")
	}
	for _, s := range scenarios {
		assert.Contains(t, res.stdout, s+": ok (scenario ")
	}
}

// TestValidateLab: a lab with errors is reported as a lab (not as a job
// without a name), its boards named by name.
func TestValidateLab(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := writeFile(t, dir, "lab.toml", `[[board]]
name = "bbb-01"
device_type = "bbb"

[[board]]
name = "bbb-03"
device_type = "bbb"
backend = "hardware"
[board.console]
kind = "tcp"
address = "127.0.0.1:4001"
mode = "rfc2217"
baud = 9600
[board.power]
kind = "pdudaemon"
hostname = "pdu"
port = 3
cycle_delay = "5s"
`)
	res := troupe(t, "validate", bad)
	assert.Equal(t, exitInvalid, res.code)
	assert.Contains(t, res.stderr, bad+`:14: board "bbb-03": power.url: is required`)
	assert.NotContains(t, res.stderr, "name: is required")
	assert.NotContains(t, res.stderr, "board[1]")

	// --lab: what the content does not tell, the flag does.
	bare := writeFile(t, dir, "empty.toml", "")
	res = troupe(t, "validate", "--lab", bare)
	assert.Equal(t, exitInvalid, res.code)
	assert.Contains(t, res.stderr, "board: is required")
	res = troupe(t, "validate", "--scenario", bare)
	assert.Equal(t, exitInvalid, res.code)
	assert.False(t, strings.Contains(res.stderr, "board: is required"), res.stderr)

	good := writeFile(t, dir, "good.toml", strings.Replace(readString(t, bad), "hostname = \"pdu\"", "url = \"http://127.0.0.1:16421\"\nhostname = \"pdu\"", 1))
	res = troupe(t, "validate", good)
	assert.Equal(t, 0, res.code, res.stderr)
	assert.Equal(t, good+": ok (lab, 2 boards)\n", res.stdout)
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
