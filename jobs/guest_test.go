package jobs_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
)

// guestBase is a host role and a guest role of two nodes that log in to
// its board.
const guestBase = `name = "guests"
[roles.host]
device_type = "sim"
[roles.guest]
host = "host"
count = 2
[[action]]
type = "boot"
roles = ["host"]
[[action]]
type = "boot"
roles = ["guest"]
address = {message = "ipv4", key = "ipaddr"}
[[action]]
type = "test"
name = "t"
run = "true"
`

func TestParseGuestRole(t *testing.T) {
	j, err := jobs.Parse("job.toml", []byte(guestBase))
	require.NoError(t, err)
	g, ok := j.Role("guest")
	require.True(t, ok)
	assert.True(t, g.Guest())
	assert.Equal(t, "host", g.Host)
	assert.Empty(t, g.DeviceType)
	h, _ := j.Role("host")
	assert.False(t, h.Guest())
	assert.Equal(t, &jobs.Address{Message: "ipv4", Key: "ipaddr"}, j.Actions[1].Address)
	assert.Nil(t, j.Actions[0].Address)

	var buf bytes.Buffer
	require.NoError(t, j.Encode(&buf))
	j2, err := jobs.Parse("job.toml", buf.Bytes())
	require.NoError(t, err, buf.String())
	for i := range j.Actions {
		j.Actions[i].Line, j2.Actions[i].Line = 0, 0
	}
	assert.Equal(t, j, j2)
}

func TestParseGuestRoleErrors(t *testing.T) {
	tests := []struct{ name, old, new, want string }{
		{"too many guests", "count = 2", "count = 33", `job.toml:2: roles: role "host" hosts 33 guests; at most 32 log in to one board`},
		{"undefined host", `host = "host"`, `host = "nohost"`, `job.toml:5: roles.guest.host: undefined role "nohost"`},
		{"host is a guest", "[roles.host]\ndevice_type = \"sim\"\n", "[roles.host]\nhost = \"guest\"\n", `job.toml:5: roles.guest.host: role "host" is a guest itself: a host role has a board of its own`},
		{"host of two nodes", "[roles.host]\ndevice_type = \"sim\"\n", "[roles.host]\ndevice_type = \"sim\"\ncount = 2\n", `job.toml:6: roles.guest.host: role "host" has 2 nodes: a host role has one (its guests log in to its board)`},
		{"guest with a device type", `host = "host"`, "host = \"host\"\ndevice_type = \"sim\"", `job.toml:6: roles.guest.device_type: a guest role (host) takes no board of its own: it has no device_type`},
		{"guest with tags", `host = "host"`, "host = \"host\"\ntags = [\"x\"]", `job.toml:6: roles.guest.tags: a guest role (host) takes no board of its own: it has no tags`},
		{"address of a board role", "roles = [\"guest\"]\naddress", "roles = [\"host\"]\naddress", `job.toml:13: action[1].address: role "host" is not a guest: only a guest's boot takes its host's address from a message`},
		{"address on a test", "run = \"true\"", "run = \"true\"\naddress = {message = \"a\", key = \"b\"}", `job.toml:18: action[2].address: not allowed on a test action`},
		{"address without key", `key = "ipaddr"`, `kee = "ipaddr"`, `job.toml:13: action[1].address.key: is required`},
		{"address bad message", `message = "ipv4"`, `message = "a b"`, `job.toml:13: action[1].address.message: letters, digits, '.', '_' and '-' (got "a b")`},
		{"guest deploys an image", "[[action]]\ntype = \"test\"", "[[action]]\ntype = \"deploy\"\nroles = [\"guest\"]\nimage = \"x\"\n[[action]]\ntype = \"test\"", `job.toml:14: action[2]: role "guest" is a guest: it logs in to its host's board and has nothing to deploy`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Contains(t, guestBase, tt.old)
			src := strings.Replace(guestBase, tt.old, tt.new, 1)
			_, err := jobs.Parse("job.toml", []byte(src))
			require.Error(t, err)
			assert.Contains(t, strings.Split(err.Error(), "\n"), tt.want)
		})
	}
}
