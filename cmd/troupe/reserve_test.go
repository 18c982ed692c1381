package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/server"
)

// TestReserveThroughServer: through the server, with tokens: only an admin
// reserves; a reserved board is not scheduled (the waiting job says who
// holds it) and the holder switches its power; release lets the job run.
func TestReserveThroughServer(t *testing.T) {
	t.Parallel()
	addr, sock := simboard(t, "ops-bbb", false)
	const admin, other, submitter = "admin-secret-0123456789", "other-admin-secret-0123456789", "submitter-secret-0123456789"
	tokens := writeTemp(t, "tokens.toml", fmt.Sprintf(`[[token]]
name = "boss"
secret = %q
role = "admin"

[[token]]
name = "deputy"
secret = %q
role = "admin"

[[token]]
name = "ci"
secret = %q
role = "submitter"
`, admin, other, submitter))
	labFile := writeTemp(t, "lab.toml", "retries = 0\n"+simboardEntry("ops-bbb", "bbb", addr, sock)+`
[[board]]
name = "sim-0"
device_type = "sim"
`)
	srv := startServe(t, "--lab", labFile, "--data", t.TempDir(), "--token-file", tokens)
	as := func(token string, args ...string) runResult {
		return cli(t, []string{"TROUPE_SERVER=" + srv.url, "TROUPE_TOKEN=" + token}, args...)
	}

	// A submitter may not; power needs a reservation by the caller.
	r := as(submitter, "reserve", "ops-bbb", "--for", "30m")
	assert.Equal(t, exitIncomplete, r.code)
	assert.Contains(t, r.stderr, `token "ci" is a submitter; this needs a admin`)
	r = as(admin, "power", "ops-bbb", "on")
	assert.Equal(t, exitIncomplete, r.code)
	assert.Contains(t, r.stderr, "device ops-bbb is not reserved by boss: reserve it first")
	r = as(admin, "power", "ops-bbb", "status")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "ops-bbb: off\n", r.stdout)
	r = as(admin, "reserve", "nope")
	assert.Equal(t, exitIncomplete, r.code)
	assert.Contains(t, r.stderr, `no device "nope"`)
	r = as(admin, "reserve", "ops-bbb", "--for", "9999h")
	assert.Equal(t, exitInvalid, r.code)
	assert.Contains(t, r.stderr, "want a duration > 0 and <= 168h")

	r = as(admin, "reserve", "ops-bbb", "--for", "30m")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Regexp(t, `^ops-bbb: reserved by boss until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n$`, r.stdout)
	r = as(other, "reserve", "ops-bbb")
	assert.Equal(t, exitIncomplete, r.code, "held by someone else")
	r = as(other, "power", "ops-bbb", "on")
	assert.Equal(t, exitIncomplete, r.code)
	assert.Contains(t, r.stderr, "not reserved by deputy")

	r = as(admin, "power", "ops-bbb", "on")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "ops-bbb: on\n", r.stdout)
	assert.Equal(t, "on\n", troupe(t, "simboard", "power", sock, "status").stdout)

	// A job for the reserved board waits, saying who holds it.
	code, data := api(t, "POST", srv.url+"/api/v1/jobs", submitter, "name = \"wants-bbb\"\ntimeout = \"1m\"\n[roles.a]\ndevice_type = \"bbb\"\n[[action]]\ntype = \"boot\"\ntimeout = \"30s\"\n")
	require.Equal(t, http.StatusCreated, code, string(data))
	var created struct{ ID string }
	require.NoError(t, json.Unmarshal(data, &created))
	deadline := time.Now().Add(20 * time.Second)
	var why string
	for {
		code, data = api(t, "GET", srv.url+"/api/v1/jobs/"+created.ID+"/explain", submitter, "")
		why = string(data)
		if code == http.StatusOK && strings.Contains(why, "boss") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	assert.Contains(t, why, "boss", "why waiting names the holder")
	code, data = api(t, "GET", srv.url+"/api/v1/jobs/"+created.ID, submitter, "")
	require.Equal(t, http.StatusOK, code)
	var j server.Job
	require.NoError(t, json.Unmarshal(data, &j))
	assert.Equal(t, "queued", j.Status, "a reserved board is not scheduled")
	// The device list (and so the UI's device page) shows who holds it.
	code, data = api(t, "GET", srv.url+"/api/v1/devices", submitter, "")
	require.Equal(t, http.StatusOK, code, string(data))
	var devs []server.Device
	require.NoError(t, json.Unmarshal(data, &devs))
	held := map[string]server.Device{}
	for _, d := range devs {
		held[d.Name] = d
	}
	assert.Equal(t, "boss", held["ops-bbb"].ReservedBy)
	assert.WithinDuration(t, time.Now().Add(30*time.Minute), held["ops-bbb"].ReservedUntil, 5*time.Minute)

	r = as(admin, "power", "ops-bbb", "off")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "ops-bbb: off\n", r.stdout)
	r = as(admin, "release", "ops-bbb")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "ops-bbb: not reserved\n", r.stdout)

	// Released: the job runs.
	deadline = time.Now().Add(90 * time.Second)
	for {
		code, data = api(t, "GET", srv.url+"/api/v1/jobs/"+created.ID, submitter, "")
		require.Equal(t, http.StatusOK, code)
		require.NoError(t, json.Unmarshal(data, &j))
		if (j.Status != "queued" && j.Status != "running") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	assert.Equal(t, "complete", j.Status, "%+v", j)
	assertBoardOff(t, sock)
}
