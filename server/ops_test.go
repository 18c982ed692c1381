package server

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpsAuthAndInput: the operator commands are for admins, and bad input
// is a clear 4xx that changes nothing.
func TestOpsAuthAndInput(t *testing.T) {
	tokens := []Token{
		{Name: "ci", Secret: "submitter-secret-0123456789", Role: Submitter},
		{Name: "boss", Secret: "admin-secret-0123456789", Role: Admin},
	}
	x := start(t, t.TempDir(), simLab(t, 1, 1), tokens)
	sub, adm := tokens[0].Secret, tokens[1].Secret
	for _, c := range []struct {
		path, token, body string
		code              int
		want              string
	}{
		{"/api/v1/devices/sim-0/reserve", "", `{}`, 401, "missing or unknown token"},
		{"/api/v1/devices/sim-0/reserve", sub, `{}`, 403, "needs a admin"},
		{"/api/v1/devices/sim-0/release", sub, ``, 403, "needs a admin"},
		{"/api/v1/devices/sim-0/power", sub, `{"action":"on"}`, 403, "needs a admin"},
		{"/api/v1/devices/nope/reserve", adm, `{}`, 404, `no device \"nope\"`},
		{"/api/v1/devices/sim-0/reserve", adm, `{"for":"forever"}`, 400, "want a duration"},
		{"/api/v1/devices/sim-0/reserve", adm, `{"for":"-1h"}`, 400, "want a duration"},
		{"/api/v1/devices/sim-0/reserve", adm, `{"until":"x"}`, 400, "unknown field"},
		{"/api/v1/devices/sim-0/power", adm, `{"action":"explode"}`, 400, "want on, off, cycle or status"},
		{"/api/v1/devices/sim-0/power", adm, `{"action":"on"}`, 400, "not a hardware board"},
	} {
		code, body := call(t, "POST", x.url+c.path, c.token, "application/json", c.body)
		assert.Equal(t, c.code, code, "%s %s: %s", c.path, c.body, body)
		assert.Contains(t, body, c.want, "%s %s", c.path, c.body)
	}
	code, body := call(t, "POST", x.url+"/api/v1/devices/sim-0/reserve", adm, "application/json", `{"for":"10m"}`)
	require.Equal(t, 200, code, body)
	assert.Contains(t, body, `"reserved_by":"boss"`)
	code, body = call(t, "POST", x.url+"/api/v1/devices/sim-0/release", adm, "", "")
	require.Equal(t, 200, code, body)
	assert.Contains(t, body, `"reserved_by":""`)
	assert.NotContains(t, body, "reserved_until")
}
