package server

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// raw sends a request with exactly the headers given (Host: the request's
// Host) and returns the status and body.
func raw(t *testing.T, method, url, body string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range headers {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(data)
}

// TestTokenlessServerRefusesWhatAWebPageCouldSend: without tokens a page
// of another site (or a rebound DNS name) must neither read nor change
// anything; troupe's own clients still can.
func TestTokenlessServerRefusesWhatAWebPageCouldSend(t *testing.T) {
	x := start(t, t.TempDir(), simLab(t, 1, 1), nil)
	port := x.url[strings.LastIndexByte(x.url, ':'):]
	job := testJob("web", "true")
	jobs := x.url + "/api/v1/jobs"
	for _, c := range []struct {
		name, method, url, body string
		headers                 map[string]string
		code                    int
	}{
		{"rebound DNS name", "GET", jobs, "", map[string]string{"Host": "attacker.example" + port}, 403},
		{"rebound name, web UI", "GET", x.url + "/", "", map[string]string{"Host": "attacker.example"}, 403},
		{"LAN address as host", "GET", jobs, "", map[string]string{"Host": "192.168.1.2" + port}, 403},
		{"text/plain (no preflight)", "POST", jobs, job, map[string]string{"Content-Type": "text/plain"}, 415},
		{"form", "POST", jobs, job, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"multipart", "POST", jobs, job, map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, 415},
		{"no content type", "POST", jobs, job, nil, 415},
		{"cancel without header", "POST", jobs + "/1/cancel", "", nil, 415},
		{"health as text/plain", "PUT", x.url + "/api/v1/devices/sim-0/health", `{"health":"retired"}`, map[string]string{"Content-Type": "text/plain"}, 415},
		{"cross-site origin", "POST", jobs, job, map[string]string{"Content-Type": "application/toml", "Origin": "http://attacker.example"}, 403},
		{"cross-site origin, client header", "POST", jobs, job, map[string]string{ClientHeader: "x", "Origin": "https://attacker.example"}, 403},
		{"other loopback port", "POST", jobs, job, map[string]string{"Content-Type": "application/toml", "Origin": "http://127.0.0.1:1"}, 403},
		{"null origin", "POST", jobs, job, map[string]string{"Content-Type": "application/toml", "Origin": "null"}, 403},
	} {
		code, body := raw(t, c.method, c.url, c.body, c.headers)
		assert.Equal(t, c.code, code, "%s: %s", c.name, body)
	}
	// Nothing changed.
	_, body := call(t, "GET", jobs, "", "", "")
	require.JSONEq(t, `[]`, body)
	_, body = call(t, "GET", x.url+"/api/v1/devices", "", "", "")
	require.NotContains(t, body, "retired")

	for _, c := range []struct {
		name    string
		headers map[string]string
	}{
		{"toml", map[string]string{"Content-Type": "application/toml"}},
		{"toml with charset", map[string]string{"Content-Type": "application/toml; charset=utf-8"}},
		{"client header", map[string]string{ClientHeader: "cli", "Content-Type": "text/plain"}},
		{"same origin", map[string]string{"Content-Type": "application/toml", "Origin": x.url}},
		{"localhost", map[string]string{"Content-Type": "application/toml", "Host": "localhost" + port}},
		{"ipv6 loopback", map[string]string{"Content-Type": "application/toml", "Host": "[::1]" + port}},
	} {
		code, body := raw(t, "POST", jobs, job, c.headers)
		assert.Equal(t, http.StatusCreated, code, "%s: %s", c.name, body)
	}
	code, body := raw(t, "GET", jobs, "", map[string]string{"Host": "localhost" + port})
	require.Equal(t, http.StatusOK, code, body)
}

// TestServerWithTokensAnswersAnyHostButNoCrossSiteChange: behind a real
// name the tokens are the credential; a cross-site Origin still changes
// nothing.
func TestServerWithTokensAnswersAnyHostButNoCrossSiteChange(t *testing.T) {
	tok := Token{Name: "ci", Secret: "submitter-secret-0123456789", Role: Submitter}
	x := start(t, t.TempDir(), simLab(t, 1, 1), []Token{tok})
	auth := "Bearer " + tok.Secret
	code, body := raw(t, "GET", x.url+"/api/v1/jobs", "", map[string]string{"Host": "troupe.lab.example", "Authorization": auth})
	require.Equal(t, http.StatusOK, code, body)
	code, body = raw(t, "POST", x.url+"/api/v1/jobs", testJob("a", "true"), map[string]string{"Authorization": auth, "Origin": "http://attacker.example"})
	require.Equal(t, http.StatusForbidden, code, body)
	code, body = raw(t, "POST", x.url+"/api/v1/jobs", testJob("a", "true"), map[string]string{"Authorization": auth})
	require.Equal(t, http.StatusCreated, code, body)
}
