package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTokenlessServeRefusesWebPages: a tokenless `troupe serve` on loopback
// refuses what any web page in the user's browser could send it — a
// "simple" cross-origin POST (text/plain, no preflight) of a job, a
// request from a page whose Origin is another site, and a rebound DNS name
// in the Host header — and queues nothing; the CLI's own requests work.
func TestTokenlessServeRefusesWebPages(t *testing.T) {
	t.Parallel()
	srv := startServe(t, "--data", t.TempDir())
	job := "name = \"pwn\"\n[roles.a]\ndevice_type = \"sim\"\n[[action]]\ntype = \"boot\"\n[[action]]\ntype = \"test\"\nname = \"x\"\nrun = \"id\"\n"
	send := func(host, origin, contentType string) int {
		t.Helper()
		req, err := http.NewRequest("POST", srv.url+"/api/v1/jobs", strings.NewReader(job))
		require.NoError(t, err)
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		req.Header.Set("Content-Type", contentType)
		resp, err := httpClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusUnsupportedMediaType, send("", "", "text/plain"), "a simple POST, as a form or fetch without preflight sends")
	assert.Equal(t, http.StatusForbidden, send("", "https://evil.example", "application/toml"), "another site's Origin")
	assert.Equal(t, http.StatusForbidden, send("evil.example:8480", "", "application/toml"), "a rebound DNS name")
	req, err := http.NewRequest("GET", srv.url+"/api/v1/jobs", nil)
	require.NoError(t, err)
	req.Host = "rebound.example"
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "reading jobs through a rebound DNS name")

	code, data := api(t, "GET", srv.url+"/api/v1/jobs", "", "")
	require.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, "[]", string(data), "nothing was queued")
	assert.Equal(t, http.StatusCreated, send("", "", "application/toml"), "the same job with a non-simple Content-Type")
}
