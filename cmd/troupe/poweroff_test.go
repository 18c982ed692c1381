package main

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/report"
)

// TestPowerOffLies: the board's power switch answers OK to "off" and does
// nothing (a lying PDU); the read-back catches it when the board is
// released. The job, which passed its actions, ends incomplete with an
// infrastructure error naming the board and "still on" (exit 2).
func TestPowerOffLies(t *testing.T) {
	t.Parallel()
	tty, sock := simboard(t, "hw-liar", true)
	q := func(op string) string {
		return fmt.Sprintf("[%q, \"simboard\", \"power\", %q, %q]", troupeBin, sock, op)
	}
	res := bootOnSerialBoard(t, 0, "hw-liar", tty, fmt.Sprintf(`[board.power]
kind = "command"
on = %s
off = ["true"]
state = %s
`, q("on"), q("status")))
	assert.Equal(t, 2, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	r := readResults(t, res.out)
	assert.Equal(t, report.StatusIncomplete, r.Job.Status)
	assert.Equal(t, report.Infrastructure, r.Job.Class)
	assert.Contains(t, r.Job.Error, "hw-liar still on")
	require.Len(t, r.Nodes, 1)
	// The read-back says "still on", or runs out of the release time
	// while it retries (a loaded machine): not verified off either way.
	assert.Contains(t, r.Nodes[0].Error, "board hw-liar still on: power off not verified: power off hw-liar: ")
	st := troupe(t, "simboard", "power", sock, "status")
	assert.Equal(t, "on\n", st.stdout, "the switch really lied: %s", st.stderr)
}
