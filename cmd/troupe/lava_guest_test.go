package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLAVASSHGuests: the LAVA job of a host and two ssh guests runs
// unchanged with the troupe binary on the built-in sim lab (one board:
// the guests take none): the guests' tests run in sessions on the host's
// board and meet the host at a lava-sync; import-lava prints the guest
// role, which validates.
func TestLAVASSHGuests(t *testing.T) {
	t.Parallel()
	res := troupe(t, "run", "--out", "OUT", "../../examples/lava-ssh-guests.yaml")
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	r := readResults(t, res.out)
	boards := map[string]string{}
	for _, n := range r.Nodes {
		assert.Equal(t, "complete", n.Status, "%s: %s", n.Name, n.Error)
		boards[n.Name] = n.Board
	}
	assert.Len(t, boards, 3)
	got := map[string]string{}
	for _, c := range r.Tests {
		got[c.Node+"/"+c.Name] = c.Result
	}
	assert.Equal(t, "pass", got["guest-0/same-board"], "%v", got)
	assert.Equal(t, "pass", got["guest-1/same-board"], "%v", got)

	imp := troupe(t, "import-lava", "../../examples/lava-ssh-guests.yaml")
	require.Equal(t, 0, imp.code, imp.stderr)
	assert.Contains(t, imp.stdout, "[roles.guest]\nhost = \"host\"\ncount = 2\n")
	assert.Contains(t, imp.stdout, `address = {message = "ipv4", key = "ipaddr"}`)
	p := filepath.Join(t.TempDir(), "imported.toml")
	require.NoError(t, os.WriteFile(p, []byte(imp.stdout), 0o644))
	v := troupe(t, "validate", p)
	assert.Equal(t, 0, v.code, v.stderr)
}
