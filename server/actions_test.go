package server

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/actors"
)

// TestStreamTellsEachNodesActions: the stream carries a node's phase
// changes (each action it began, then its end) with their times, so the
// job page can cut the log into sections; live, after the end, and for
// one node only.
func TestStreamTellsEachNodesActions(t *testing.T) {
	x := start(t, t.TempDir(), simLab(t, 2, 1), nil)
	id := x.submit(t, "", fmt.Sprintf(countJob, 5, ""))

	phases := func(fs []frame, node string) []string {
		var got []string
		for _, f := range fs {
			if f.Type == "action" && f.Node == node {
				got = append(got, f.Phase)
			}
		}
		return got
	}
	base := x.url + "/api/v1/jobs/" + id + "/stream"
	for _, when := range []string{"live", "after the end"} {
		conn, _, err := dial(t, base, "")
		require.NoError(t, err)
		fs := read(t, conn, nil)
		require.Equal(t, "end", fs[len(fs)-1].Type, when)
		for _, node := range []string{"a-0", "b-0"} {
			assert.Equal(t, []string{"boot", "test 'count'", "complete"}, phases(fs, node), "%s: the actions of %s", when, node)
		}
		var last time.Time
		for _, f := range fs {
			if f.Type == "action" && f.Node == "a-0" {
				assert.False(t, f.Time.Before(last), "%s: action times in order", when)
				last = f.Time
			}
		}
	}

	conn, _, err := dial(t, base+"?node=b-0", "")
	require.NoError(t, err)
	fs := read(t, conn, nil)
	assert.Empty(t, phases(fs, "a-0"), "the node filter applies to actions")
	assert.Equal(t, []string{"boot", "test 'count'", "complete"}, phases(fs, "b-0"))
}

// TestReadActionsSkipsAPartialRecord: a record still being written is
// read next time, whole; a bad line is skipped.
func TestReadActionsSkipsAPartialRecord(t *testing.T) {
	dir := t.TempDir()
	recs, off, err := readActions(dir, 0)
	require.NoError(t, err)
	assert.Empty(t, recs, "no file yet")
	assert.Zero(t, off)

	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	require.NoError(t, recordAction(dir, actors.Event{Node: "a-0", Phase: "boot", Time: now}))
	f, err := os.OpenFile(filepath.Join(dir, actionsFile), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString("not json\n{\"node\": \"a-0\", \"pha")
	require.NoError(t, err)

	recs, off, err = readActions(dir, 0)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, actionFrame{Type: "action", Node: "a-0", Phase: "boot", Time: now}, recs[0])

	_, err = f.WriteString("se\": \"test 'x'\"}\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	recs, _, err = readActions(dir, off)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, "test 'x'", recs[0].Phase)
}

// FuzzReadActions: whatever the file holds, readActions returns without
// error, never moves past the file's end nor backwards, and reading on
// from where it stopped finds nothing it skipped.
func FuzzReadActions(f *testing.F) {
	f.Add([]byte("{\"type\":\"action\",\"node\":\"a-0\",\"phase\":\"boot\",\"time\":\"2026-01-02T03:04:05Z\"}\n"))
	f.Add([]byte("garbage\n{\"node\":\"a-0\",\"pha"))
	f.Add([]byte("\n\n{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, actionsFile), data, 0o644))
		recs, off, err := readActions(dir, 0)
		require.NoError(t, err)
		require.LessOrEqual(t, off, int64(len(data)))
		require.GreaterOrEqual(t, off, int64(0))
		for _, r := range recs {
			require.Equal(t, "action", r.Type)
		}
		more, off2, err := readActions(dir, off)
		require.NoError(t, err)
		require.Empty(t, more, "a second read finds nothing new")
		require.Equal(t, off, off2)
	})
}

// TestReadActionsIsBounded: a file far bigger than any job's actions
// (not one the server wrote) is read up to maxActionsRead, then no more.
func TestReadActionsIsBounded(t *testing.T) {
	dir := t.TempDir()
	line := []byte(`{"type":"action","node":"a-0","phase":"boot","time":"2026-01-02T03:04:05Z"}` + "\n")
	big := bytes.Repeat(line, 2*maxActionsRead/len(line))
	require.NoError(t, os.WriteFile(filepath.Join(dir, actionsFile), big, 0o644))
	recs, off, err := readActions(dir, 0)
	require.NoError(t, err)
	assert.LessOrEqual(t, off, int64(maxActionsRead))
	assert.Len(t, recs, maxActionsRead/len(line))
	more, _, err := readActions(dir, off)
	require.NoError(t, err)
	assert.Empty(t, more)
}
