package jobs_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
)

// TestTestBeforeBoot: a test on a role that no boot before it booted is
// invalid (it ran on a board that was off, and the board was blamed).
func TestTestBeforeBoot(t *testing.T) {
	for _, tc := range []struct{ name, old, new, want string }{
		{"no boot at all", "[[action]]\ntype = \"boot\"\ntimeout = \"2m\"\n", "",
			`job.toml:16: action[1]: test "serve" runs on role "server" before any boot action of that role: boot it first`},
		{"boot of another role", "type = \"boot\"\n", "type = \"boot\"\nroles = [\"client\"]\n",
			`job.toml:20: action[2]: test "serve" runs on role "server" before any boot action of that role: boot it first`},
		{"boot after the test", "[[action]]\ntype = \"boot\"\ntimeout = \"2m\"\n", "",
			`test "serve" runs on role "server" before any boot action`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := edit(t, tc.old, tc.new)
			if tc.name == "boot after the test" {
				src += "[[action]]\ntype = \"boot\"\n"
			}
			_, err := jobs.Parse("job.toml", []byte(src))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	// A test of the booted role only, before the other role boots, is fine.
	src := edit(t, "type = \"boot\"\n", "type = \"boot\"\nroles = [\"server\"]\n") + "[[action]]\ntype = \"boot\"\nroles = [\"client\"]\n"
	_, err := jobs.Parse("job.toml", []byte(src))
	assert.NoError(t, err)
}

// TestJobNames: job names name result folders.
func TestJobNames(t *testing.T) {
	for _, name := range []string{"a", "0", "smoke.v2-x_y", strings.Repeat("a", jobs.MaxNameLen)} {
		_, err := jobs.Parse("job.toml", []byte(edit(t, `name = "smoke"`, `name = "`+name+`"`)))
		assert.NoError(t, err, name)
	}
	for _, tc := range []struct{ name, want string }{
		{"..", `job.toml:1: name: must start with a letter or digit (got "..")`},
		{".hidden", `job.toml:1: name: must start with a letter or digit (got ".hidden")`},
		{"-x", `job.toml:1: name: must start with a letter or digit`},
		{"_x", `job.toml:1: name: must start with a letter or digit`},
		{"a..b", `job.toml:1: name: must not contain ".." (got "a..b")`},
		{"a/../b", `job.toml:1: name: must contain only letters, digits, '_', '.' and '-'`},
		{strings.Repeat("a", jobs.MaxNameLen+1), `job.toml:1: name: must be at most 100 characters (got 101)`},
	} {
		_, err := jobs.Parse("job.toml", []byte(edit(t, `name = "smoke"`, `name = "`+tc.name+`"`)))
		require.Error(t, err, tc.name)
		assert.Contains(t, err.Error(), tc.want)
	}
}
