package lava_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lava"
)

func TestSecretValues(t *testing.T) {
	src := `job_name: s
context: {c: not-a-secret}
secrets:
  A: plain-value
  B: "quoted value"
  C: &k aliased
  D: *k
actions:
- test:
    secrets: {E: nested-not-top-level}
`
	values, err := lava.SecretValues("job.yaml", []byte(src))
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"plain-value", "quoted value", "aliased", "aliased"}, values)

	values, err = lava.SecretValues("job.yaml", []byte("job_name: s\nactions: []\n"))
	require.NoError(t, err)
	assert.Empty(t, values)
}

// TestSecretValuesBounds: the file is checked as Import checks it before
// its secrets are read.
func TestSecretValuesBounds(t *testing.T) {
	for name, src := range map[string]string{
		"billion laughs": billionLaughs() + "secrets: {A: x}\n",
		"too big":        "secrets: {A: x}\n#" + strings.Repeat("x", lava.MaxSize),
		"too deep":       "secrets: {A: x}\nx: " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\n",
		"not yaml":       "secrets: {A: x\n",
	} {
		var err error
		cost := allocated(func() { _, err = lava.SecretValues("job.yaml", []byte(src)) })
		assert.Error(t, err, name)
		assert.Less(t, cost, uint64(maxCost), "%s: allocated %d bytes", name, cost)
	}
}

// FuzzSecretValues: reading the secrets alone finds every secret the
// import does, within the bounds.
func FuzzSecretValues(f *testing.F) {
	f.Add(job("secrets: {A: x, B: \"y z\"}"))
	f.Add("secrets: {A: &a x, B: *a}\n")
	f.Add(billionLaughs())
	f.Fuzz(func(t *testing.T, src string) {
		var values []string
		var err error
		cost := allocated(func() { values, err = lava.SecretValues("job.yaml", []byte(src)) })
		require.Less(t, cost, uint64(maxCost), "reading %d bytes allocated %d", len(src), cost)
		j, ierr := lava.Import("dir/job.yaml", []byte(src))
		if ierr != nil {
			return
		}
		require.NoError(t, err, "Import accepted the file")
		for _, v := range slices.Collect(maps.Values(j.Secrets)) {
			require.Contains(t, values, v)
		}
	})
}
