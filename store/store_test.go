package store

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/report"
)

func TestJobsSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "troupe.db")
	s, err := Open(path)
	require.NoError(t, err)
	a := &Job{Name: "a", Status: StatusQueued, Source: "name = \"a\"", Submitted: time.Unix(1, 0).UTC()}
	b := &Job{Name: "b", Status: StatusQueued}
	require.NoError(t, s.Add(a))
	require.NoError(t, s.Add(b))
	require.Equal(t, "1", a.ID)
	require.Equal(t, "2", b.ID)
	b.Status = report.StatusComplete
	b.Results = &report.Results{Job: report.Job{Name: "b", Status: report.StatusComplete}}
	require.NoError(t, s.Put(b))
	require.NoError(t, s.SetHealth("sim-1", "bad"))
	require.NoError(t, s.Close())

	s, err = Open(path)
	require.NoError(t, err)
	defer s.Close()
	js, err := s.Jobs()
	require.NoError(t, err)
	require.Len(t, js, 2)
	require.Equal(t, *a, *js[0])
	require.Equal(t, report.StatusComplete, js[1].Results.Job.Status)
	h, err := s.Health()
	require.NoError(t, err)
	require.Equal(t, map[string]string{"sim-1": "bad"}, h)

	c := &Job{Name: "c"}
	require.NoError(t, s.Add(c))
	require.Equal(t, "3", c.ID, "IDs are never reused")
}

func TestSecondServerOnTheSameStoreIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "troupe.db")
	s, err := Open(path)
	require.NoError(t, err)
	defer s.Close()
	_, err = Open(path)
	require.ErrorContains(t, err, "in use by another troupe server")
}

func TestBadIDs(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "troupe.db"))
	require.NoError(t, err)
	defer s.Close()
	for _, id := range []string{"", "0", "x", "-1", "1.5"} {
		require.Error(t, s.Put(&Job{ID: id}), id)
	}
}
