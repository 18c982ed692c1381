package backend

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lab"
)

// TestEveryLabKind: the table has an entry, complete, for exactly the
// kinds a lab file may name.
func TestEveryLabKind(t *testing.T) {
	assert.ElementsMatch(t, lab.Backends(), slices.Collect(maps.Keys(kinds)))
	for name, k := range kinds {
		assert.NotNil(t, k.Open, name)
		assert.NotNil(t, k.PowerOffLeftover, name)
	}
}

func TestUnknownKind(t *testing.T) {
	b := lab.Board{Name: "b1", Backend: "teleport"}
	_, err := Open(b, Env{})
	require.EqualError(t, err, `board b1: unknown backend "teleport"`)
	require.EqualError(t, PowerOffLeftover(context.Background(), b, t.TempDir()), `board b1: unknown backend "teleport"`)
}

// A board that was never on has nothing to power off, whatever its kind.
func TestPowerOffLeftoverNeverOn(t *testing.T) {
	for _, b := range []lab.Board{
		{Name: "s", Backend: lab.Sim},
		{Name: "q", Backend: lab.QemuBackend, Qemu: &lab.Qemu{Arch: "x86_64"}},
		{Name: "h", Backend: lab.HardwareBackend, Hardware: &lab.Hardware{Power: lab.Power{Kind: "manual"}}},
	} {
		assert.NoError(t, PowerOffLeftover(context.Background(), b, t.TempDir()), b.Backend)
	}
}
