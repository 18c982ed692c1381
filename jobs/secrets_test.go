package jobs_test

import (
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
)

func TestSecretValues(t *testing.T) {
	for name, src := range map[string]string{
		"table":        minimal + "[secrets]\nA = \"one\"\nB = 'two'\n[context]\nc = \"not-a-secret\"\n",
		"inline table": "secrets = {A = \"one\", B = \"two\"}\n" + minimal,
		"dotted keys":  "secrets.A = \"one\"\nsecrets.B = \"two\"\n" + minimal,
	} {
		j, err := jobs.Parse("job.toml", []byte(src))
		require.NoError(t, err, name)
		values, err := jobs.SecretValues("job.toml", []byte(src))
		require.NoError(t, err, name)
		assert.ElementsMatch(t, []string{"one", "two"}, values, name)
		assert.ElementsMatch(t, slices.Collect(maps.Values(j.Secrets)), values, name)
	}
	values, err := jobs.SecretValues("job.toml", []byte(minimal))
	require.NoError(t, err)
	assert.Empty(t, values)
}

// TestSecretValuesBounds: the file is checked as Parse checks it before
// its secrets table is decoded.
func TestSecretValuesBounds(t *testing.T) {
	for _, a := range attacks {
		var err error
		cost := allocated(func() { _, err = jobs.SecretValues("job.toml", []byte("[secrets]\nA = \"x\"\n"+a.src)) })
		assert.Error(t, err, a.name)
		assert.Less(t, cost, uint64(maxCost), "%s: allocated %d bytes", a.name, cost)
	}
}

// FuzzSecretValues: decoding the secrets table alone finds exactly the
// secrets Parse does, within the bounds.
func FuzzSecretValues(f *testing.F) {
	f.Add([]byte(minimal + "[secrets]\nA = \"one\"\nB = \"t\\u0077o\"\n"))
	f.Add([]byte("secrets = {A = \"one\"}\n" + minimal))
	f.Fuzz(func(t *testing.T, data []byte) {
		var values []string
		var err error
		cost := allocated(func() { values, err = jobs.SecretValues("job.toml", data) })
		require.Less(t, cost, uint64(maxCost), "reading %d bytes allocated %d", len(data), cost)
		j, perr := jobs.Parse("job.toml", data)
		if perr != nil {
			return
		}
		require.NoError(t, err, "Parse accepted the file")
		assert.ElementsMatch(t, slices.Collect(maps.Values(j.Secrets)), values)
	})
}
