package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ptr(f float64) *float64 { return &f }

func sample() *Results {
	return &Results{
		Job: Job{Name: "smoke", Status: StatusComplete, DurationS: 1.23},
		Nodes: []Node{
			{Name: "server-0", Role: "server", Board: "rpi4", Status: StatusComplete},
			{Name: "client-0", Role: "client", Board: "bbb", Status: StatusComplete},
		},
		Tests: []Test{
			{Node: "server-0", Role: "server", Suite: "net", Name: "ping", Result: Pass},
			{Node: "server-0", Role: "server", Suite: "net", Name: "iperf", Result: Pass, Measurement: ptr(93.5), Units: "Mbit/s"},
			{Node: "client-0", Role: "client", Suite: "net", Name: "ping", Result: Fail},
			{Node: "client-0", Role: "client", Suite: "disk", Name: "fio", Result: Skip},
			{Node: "client-0", Role: "client", Suite: "disk", Name: "dd", Result: Unknown},
		},
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name   string
		status string
		result []string
		want   int
	}{
		{"complete no tests", StatusComplete, nil, 0},
		{"complete all pass", StatusComplete, []string{Pass, Pass}, 0},
		{"complete skip and unknown", StatusComplete, []string{Pass, Skip, Unknown}, 0},
		{"complete with failure", StatusComplete, []string{Pass, Fail}, 1},
		{"incomplete all pass", StatusIncomplete, []string{Pass}, 2},
		{"incomplete with failure", StatusIncomplete, []string{Fail}, 2},
		{"canceled", StatusCanceled, nil, 2},
		{"empty status", "", []string{Pass}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Results{Job: Job{Status: tt.status}}
			for _, res := range tt.result {
				r.Tests = append(r.Tests, Test{Node: "n", Result: res})
			}
			assert.Equal(t, tt.want, r.ExitCode())
		})
	}
}

func TestCounts(t *testing.T) {
	r := sample()
	tests := []struct {
		node           string
		passed, failed int
	}{
		{"server-0", 2, 0},
		{"client-0", 0, 1},
		{"nobody", 0, 0},
		{"", 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.node, func(t *testing.T) {
			p, f := r.Counts(tt.node)
			assert.Equal(t, tt.passed, p, "passed")
			assert.Equal(t, tt.failed, f, "failed")
		})
	}
}

func TestJSONFieldNames(t *testing.T) {
	data, err := json.Marshal(sample())
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))

	keys := func(v any) []string {
		var ks []string
		for k := range v.(map[string]any) {
			ks = append(ks, k)
		}
		return ks
	}
	assert.ElementsMatch(t, []string{"job", "nodes", "tests"}, keys(m))
	assert.ElementsMatch(t, []string{"name", "status", "error", "duration_s"}, keys(m["job"]))
	assert.ElementsMatch(t, []string{"name", "role", "board", "status", "error"}, keys(m["nodes"].([]any)[0]))
	tests := m["tests"].([]any)
	assert.ElementsMatch(t, []string{"node", "role", "suite", "name", "result"}, keys(tests[0]),
		"measurement and units are omitted when empty")
	assert.ElementsMatch(t, []string{"node", "role", "suite", "name", "result", "measurement", "units"}, keys(tests[1]))
}

func TestJSONArraysNeverNull(t *testing.T) {
	for _, v := range []any{Results{}, &Results{}} {
		data, err := json.Marshal(v)
		require.NoError(t, err)
		assert.Contains(t, string(data), `"nodes":[]`)
		assert.Contains(t, string(data), `"tests":[]`)
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out", "job-1")
	want := sample()
	require.NoError(t, Write(dir, want))

	got, err := Read(dir)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	data, err := os.ReadFile(filepath.Join(dir, JSONFile))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(data), "{\n  \"job\": {"), "indented: %s", data)

	_, err = os.Stat(filepath.Join(dir, JUnitFile))
	require.NoError(t, err)

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{JSONFile, JUnitFile}, names, "no temp files left behind")
}

func TestWriteOverwrites(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, Write(dir, sample()))
	require.NoError(t, Write(dir, &Results{Job: Job{Name: "second"}}))
	got, err := Read(dir)
	require.NoError(t, err)
	assert.Equal(t, "second", got.Job.Name)
	assert.Empty(t, got.Tests)
}

func TestReadEmptyArraysNotNil(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, JSONFile), []byte(`{"job":{"name":"x"}}`), 0o644))
	got, err := Read(dir)
	require.NoError(t, err)
	assert.NotNil(t, got.Nodes)
	assert.NotNil(t, got.Tests)
}

func TestReadErrors(t *testing.T) {
	_, err := Read(t.TempDir())
	require.ErrorIs(t, err, os.ErrNotExist)

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, JSONFile), []byte(`{not json`), 0o644))
	_, err = Read(dir)
	require.ErrorContains(t, err, "decode")
}

func TestWriteErrors(t *testing.T) {
	require.Error(t, Write(t.TempDir(), nil))

	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	require.ErrorContains(t, Write(filepath.Join(file, "sub"), sample()), "create dir")
}
