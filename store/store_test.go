package store

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
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
	_, err = s.Add(a, nil)
	require.NoError(t, err)
	_, err = s.Add(b, nil)
	require.NoError(t, err)
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
	_, err = s.Add(c, nil)
	require.NoError(t, err)
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

// filled is a closed store file with n jobs of a few KB each (many pages).
func filled(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "troupe.db")
	s, err := Open(path)
	require.NoError(t, err)
	for i := range n {
		_, err := s.Add(&Job{Name: fmt.Sprintf("job-%d", i), Source: strings.Repeat("x", 3000)}, nil)
		require.NoError(t, err)
	}
	require.NoError(t, s.Close())
	return path
}

func TestDamagedStoreIsAClearError(t *testing.T) {
	page := int64(os.Getpagesize())
	sound := filled(t, 200)
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, path string)
		want   string
	}{
		{"empty", func(t *testing.T, path string) { require.NoError(t, os.Truncate(path, 0)) }, "the file is empty"},
		{"a few bytes", func(t *testing.T, path string) { require.NoError(t, os.Truncate(path, 10)) }, "too short"},
		{"truncated to half", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			require.NoError(t, err)
			require.NoError(t, os.Truncate(path, fi.Size()/2/page*page))
		}, "truncated"},
		{"truncated mid-page", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			require.NoError(t, err)
			require.NoError(t, os.Truncate(path, fi.Size()/3-100))
		}, "truncated"},
		{"both meta pages", func(t *testing.T, path string) {
			garbage(t, path, 0, 64)
			garbage(t, path, page, 64)
		}, "no valid meta page"},
		{"bad page", func(t *testing.T, path string) {
			for p := int64(2); p < 40; p++ {
				garbage(t, path, p*page, page)
			}
		}, "damaged page"},
		{"bad data pages", func(t *testing.T, path string) {
			for p := int64(100); p < 120; p++ {
				garbage(t, path, p*page, page)
			}
		}, "damaged page"},
		{"not a database", func(t *testing.T, path string) {
			require.NoError(t, os.WriteFile(path, []byte(strings.Repeat("name = \"x\"\n", 1000)), 0o600))
		}, "no valid meta page"},
	} {
		t.Run(c.name, func(t *testing.T) {
			data, err := os.ReadFile(sound)
			require.NoError(t, err)
			path := filepath.Join(t.TempDir(), "troupe.db")
			require.NoError(t, os.WriteFile(path, data, 0o600))
			c.damage(t, path)
			_, err = Open(path)
			require.ErrorIs(t, err, ErrDamaged)
			require.ErrorContains(t, err, c.want)
			require.ErrorContains(t, err, path)
			require.ErrorContains(t, err, "restore it from a backup")
		})
	}
}

// garbage overwrites n bytes at off with seeded random bytes.
func garbage(t *testing.T, path string, off, n int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer f.Close()
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(off), 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
}

func TestAddSkipsTakenIDs(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "troupe.db"))
	require.NoError(t, err)
	defer s.Close()
	j := &Job{Name: "a"}
	_, err = s.Add(j, func(id string) bool { return id == "1" || id == "2" })
	require.NoError(t, err)
	require.Equal(t, "3", j.ID)
}

func TestIdempotencyKeyReturnsTheFirstJob(t *testing.T) {
	path := filepath.Join(t.TempDir(), "troupe.db")
	s, err := Open(path)
	require.NoError(t, err)
	a := &Job{Name: "a", Submitter: "ci", Key: "k1"}
	first, err := s.Add(a, nil)
	require.NoError(t, err)
	require.Empty(t, first)
	require.NoError(t, s.Close())

	s, err = Open(path) // the key survives a restart
	require.NoError(t, err)
	defer s.Close()
	again := &Job{Name: "a again", Submitter: "ci", Key: "k1"}
	first, err = s.Add(again, nil)
	require.NoError(t, err)
	require.Equal(t, a.ID, first)
	js, err := s.Jobs()
	require.NoError(t, err)
	require.Len(t, js, 1, "the repeat is not stored")

	other := &Job{Name: "b", Submitter: "someone-else", Key: "k1"}
	first, err = s.Add(other, nil)
	require.NoError(t, err)
	require.Empty(t, first, "keys are per submitter")
	require.NotEqual(t, a.ID, other.ID)

	require.NoError(t, s.Delete(a.ID))
	fresh := &Job{Name: "c", Submitter: "ci", Key: "k1"}
	first, err = s.Add(fresh, nil)
	require.NoError(t, err)
	require.Empty(t, first, "a deleted job's key is free again")
	js, err = s.Jobs()
	require.NoError(t, err)
	require.Len(t, js, 2)
	n, err := s.Sequence()
	require.NoError(t, err)
	require.Equal(t, uint64(3), n)
}
