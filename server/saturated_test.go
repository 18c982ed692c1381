package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/store"
)

// postJob submits job with client from any goroutine: no require inside.
func postJob(client *http.Client, url, job string) (string, error) {
	req, err := http.NewRequest("POST", url+"/api/v1/jobs", strings.NewReader(job))
	if err != nil {
		return "", err
	}
	req.Header.Set(ClientHeader, "test")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("submit: %d %s", resp.StatusCode, data)
	}
	var r struct{ ID string }
	if err := json.Unmarshal(data, &r); err != nil || r.ID == "" {
		return "", fmt.Errorf("submit: answer %s: %v", data, err)
	}
	return r.ID, nil
}

// TestSubmitAnsweredWhileLabSaturated: with the lab's only board held by
// a job that waits for a gate the test opens only at the end, 40
// submissions from 20 submitters at once are all answered 201 while that
// job still runs: a submission is accepted, stored and answered, and the
// lab plans and runs it later. Each was stored before its answer: a new
// server on the same data, the first stopped with all of them still
// queued, has every one, queued.
func TestSubmitAnsweredWhileLabSaturated(t *testing.T) {
	data := t.TempDir()
	x := start(t, data, simLab(t, 1, 1), nil)
	busy := x.submit(t, "", testJob("busy", `echo busy-started; while [ ! -e "$HOME/go" ]; do sleep 0.05; done`))
	x.awaitLog(t, busy, "busy-started", time.Minute)

	const submitters, each = 20, 2
	// One connection per submitter, kept: connections closed and opened
	// anew at this pace could outrun the server's count of a client's
	// connections (Limits.ConnsPerAddr) on a loaded host.
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: submitters}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	var ids []string
	var errs []error
	var wg sync.WaitGroup
	for s := range submitters {
		wg.Go(func() {
			for i := range each {
				id, err := postJob(client, x.url, testJob(fmt.Sprintf("q-%d-%d", s, i), "echo ran"))
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					ids = append(ids, id)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Empty(t, errs)
	require.Len(t, ids, submitters*each)
	require.Equal(t, store.StatusRunning, x.job(t, busy).Status, "every submission was answered while the lab was full")
	for _, id := range ids {
		require.Equal(t, store.StatusQueued, x.job(t, id).Status, id)
	}
	x.stop()

	y := start(t, data, simLab(t, 1, 1), nil)
	for _, id := range ids {
		j := y.job(t, id)
		assert.Contains(t, []string{store.StatusQueued, store.StatusRunning, "complete"}, j.Status, id)
		assert.True(t, strings.HasPrefix(j.Name, "q-"), id)
	}
	y.openGate(t, "go")
	jb := y.await(t, busy, time.Minute, "complete", "incomplete")
	require.Equal(t, "complete", jb.Status, jb.Error)
}
