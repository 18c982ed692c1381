package server

import (
	"encoding/json"
	"errors"
	"net"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/workers"
)

type fakeHub struct {
	ws  []workers.WorkerStatus
	err error
}

func (f fakeHub) Workers() ([]workers.WorkerStatus, error) { return f.ws, f.err }

func serveWorkers(t *testing.T, hub WorkerLister) string {
	t.Helper()
	s, err := New(Config{Lab: simLab(t, 1, 0), Data: t.TempDir(), Tokens: []Token{
		{Name: "v", Secret: "viewer-0123456789", Role: Viewer},
	}})
	require.NoError(t, err)
	ts := httptest.NewUnstartedServer(s.WithWorkers(hub))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ts.Listener = ln
	ts.Start()
	t.Cleanup(func() { ts.Close(); _ = s.Close() })
	return ts.URL
}

func TestWorkersAPI(t *testing.T) {
	url := serveWorkers(t, fakeHub{ws: []workers.WorkerStatus{
		{Name: "w1", Connected: false, Address: "127.0.0.1:9", Boards: []string{"b1"}},
		{Name: "w2", Connected: true, Boards: []string{"b2", "b3"}},
	}})
	code, _ := call(t, "GET", url+"/api/v1/workers", "", "", "")
	assert.Equal(t, 401, code, "viewers only")
	code, body := call(t, "GET", url+"/api/v1/workers", "viewer-0123456789", "", "")
	require.Equal(t, 200, code, body)
	var ws []workers.WorkerStatus
	require.NoError(t, json.Unmarshal([]byte(body), &ws))
	require.Len(t, ws, 2)
	assert.False(t, ws[0].Connected)
	assert.Equal(t, []string{"b2", "b3"}, ws[1].Boards)
	code, _ = call(t, "GET", url+"/api/v1/devices", "viewer-0123456789", "", "")
	assert.Equal(t, 200, code, "the server's own routes still served")

	url = serveWorkers(t, fakeHub{err: errors.New("hub stopped")})
	code, body = call(t, "GET", url+"/api/v1/workers", "viewer-0123456789", "", "")
	assert.Equal(t, 503, code)
	assert.Contains(t, body, "hub stopped")
}
