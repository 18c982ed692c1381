package scenario_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/scenario"
)

func roles(m map[string][]string) func(string) []string {
	return func(role string) []string { return m[role] }
}

var relayNodes = roles(map[string][]string{
	"server": {"server-0"},
	"client": {"client-0", "client-1", "client-2", "client-3", "client-4"},
})

func TestPlanDeterministic(t *testing.T) {
	s, err := scenario.Parse("scenarios/full.toml", []byte(full))
	require.NoError(t, err)
	p1, err := s.Plan(s.Seed, relayNodes)
	require.NoError(t, err)
	p2, err := s.Plan(s.Seed, relayNodes)
	require.NoError(t, err)
	assert.Equal(t, p1, p2)
	assert.Equal(t, s.Seed, p1.Seed)
	require.Len(t, p1.Faults, len(s.Faults))

	// The order of the nodes does not matter.
	p3, err := s.Plan(s.Seed, roles(map[string][]string{
		"client": {"client-4", "client-2", "client-0", "client-3", "client-1"},
	}))
	require.NoError(t, err)
	assert.Equal(t, p1, p3)

	seeds := map[uint64]bool{}
	for i, f := range p1.Faults {
		assert.Equal(t, s.Faults[i], f.Fault)
		assert.False(t, seeds[f.Seed], "faults share a seed")
		seeds[f.Seed] = true
	}
	assert.Equal(t, "client-1", p1.Faults[0].Node)
	assert.Contains(t, []string{"client-0", "client-1", "client-2", "client-3", "client-4"}, p1.Faults[1].Node)
	assert.Empty(t, p1.Faults[2].Node, "a board fault has no node")

	// Another seed: other fault seeds.
	p4, err := s.Plan(s.Seed+1, relayNodes)
	require.NoError(t, err)
	for i := range p1.Faults {
		assert.NotEqual(t, p1.Faults[i].Seed, p4.Faults[i].Seed)
	}
}

func TestPlanRoleNodeAcrossSeeds(t *testing.T) {
	s := &scenario.Scenario{Faults: []scenario.Fault{{Role: "client", Kind: scenario.PowerLoss, When: "boot"}}}
	picked := map[string][]uint64{}
	var lines []string
	for seed := uint64(0); seed < 8; seed++ {
		p, err := s.Plan(seed, relayNodes)
		require.NoError(t, err)
		node := p.Faults[0].Node
		picked[node] = append(picked[node], seed)
		lines = append(lines, fmt.Sprintf("seed %d -> %s", seed, node))
		again, err := s.Plan(seed, relayNodes)
		require.NoError(t, err)
		assert.Equal(t, node, again.Faults[0].Node, "seed %d", seed)
	}
	t.Log("\n" + strings.Join(lines, "\n"))
	// Pinned: plans must not change between versions, or scenarios that
	// passed would test something else.
	assert.Equal(t, map[string][]uint64{
		"client-0": {7}, "client-1": {5}, "client-2": {2, 6}, "client-3": {0}, "client-4": {1, 3, 4},
	}, picked)
	assert.GreaterOrEqual(t, len(picked), 3, "8 seeds pick at least 3 of the 5 clients: %v", picked)
}

func TestPlanRoleWithoutNodes(t *testing.T) {
	s, err := scenario.Parse("s.toml", []byte(`name = "s"
seed = 1
job = "j.toml"
[[fault]]
role = "client"
kind = "power-loss"
[[fault]]
role = "observer"
kind = "power-loss"
[[fault]]
role = "server"
kind = "power-loss"
`))
	require.NoError(t, err)
	_, err = s.Plan(1, roles(map[string][]string{"client": {"client-0"}}))
	require.Error(t, err)
	var errs jobs.Errors
	require.ErrorAs(t, err, &errs)
	assert.Equal(t, "s.toml:7: fault[1].role: role \"observer\" has no nodes\ns.toml:10: fault[2].role: role \"server\" has no nodes", err.Error())

	_, err = s.Plan(1, nil)
	assert.Error(t, err)
}

func TestPlanString(t *testing.T) {
	s, err := scenario.Parse("scenarios/full.toml", []byte(full))
	require.NoError(t, err)
	p, err := s.Plan(7, relayNodes)
	require.NoError(t, err)
	lines := strings.Split(p.String(), "\n")
	require.Len(t, lines, 6)
	want := []string{
		fmt.Sprintf("client-1: power-loss when test:serve after 500ms (seed %d)", p.Faults[0].Seed),
		fmt.Sprintf(`%s (role client): console-noise at 50 bytes/s when console:login:\s*$ (seed %d)`, p.Faults[1].Node, p.Faults[1].Seed),
		fmt.Sprintf("board sim-2: console-drop with probability 0.01 when boot (seed %d)", p.Faults[2].Seed),
		fmt.Sprintf("server-0: console-slow at 9600 baud when deploy (seed %d)", p.Faults[3].Seed),
		fmt.Sprintf("server-0: slow-boot by 2s when boot (seed %d)", p.Faults[4].Seed),
		fmt.Sprintf("client-0: console-disconnect for good when boot (seed %d)", p.Faults[5].Seed),
	}
	assert.Equal(t, want, lines)
	assert.Empty(t, scenario.Plan{}.String())
}
