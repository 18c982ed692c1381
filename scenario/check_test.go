package scenario_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/scenario"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// holding is an outcome for which every expectation of fullScenario holds.
func holding() scenario.Outcome {
	return scenario.Outcome{
		Results: &report.Results{
			Job: report.Job{
				Name: "relay", Status: "incomplete", Error: "node client-1: board sim-1 lost power", Class: "infrastructure",
				Attempts: []report.Attempt{{Boards: []string{"sim-3"}, Error: "boot failed"}},
			},
			Nodes: []report.Node{
				{Name: "client-0", Role: "client", Board: "sim-0", Status: "complete"},
				{Name: "client-1", Role: "client", Board: "sim-1", Status: "incomplete", Error: "lost power"},
				{Name: "server-0", Role: "server", Board: "sim-2", Status: "incomplete", Error: "regex wanted this"},
			},
			Tests: []report.Test{
				{Node: "client-0", Suite: "connect", Name: "connect", Result: "pass"},
				{Node: "client-0", Suite: "connect", Name: "greeting", Result: "pass"},
			},
		},
		Exit:    2,
		FaultAt: t0,
		EndedAt: t0.Add(4 * time.Second),
		Boards:  map[string]string{"sim-0": "good", "sim-1": "good", "sim-2": "bad"},
	}
}

func TestCheckAllHold(t *testing.T) {
	e := fullScenario().Expect
	assert.Empty(t, e.Check(holding()))
	assert.Empty(t, scenario.Expect{}.Check(scenario.Outcome{}), "nothing expected, nothing checked")
}

func TestCheckEachFailure(t *testing.T) {
	tests := []struct {
		name   string
		change func(o *scenario.Outcome)
		want   string
	}{
		{"job status", func(o *scenario.Outcome) { o.Results.Job.Status = "complete" }, `job status: want "incomplete", got "complete"`},
		{"exit code", func(o *scenario.Outcome) { o.Exit = 0 }, `exit code: want "2", got "0"`},
		{"job error", func(o *scenario.Outcome) { o.Results.Job.Error = "node server-0 timed out" }, `job error: want "/client-1/", got "node server-0 timed out"`},
		{"class", func(o *scenario.Outcome) { o.Results.Job.Class = "test" }, `job error class: want "infrastructure", got "test"`},
		{"within: too late", func(o *scenario.Outcome) { o.EndedAt = t0.Add(7200 * time.Millisecond) }, `job ended after the fault: want "within 5s", got "after 7.2s"`},
		{"within: no fault", func(o *scenario.Outcome) { o.FaultAt = time.Time{} }, `job ended after the fault: want "within 5s", got "no fault fired"`},
		{"within: not ended", func(o *scenario.Outcome) { o.EndedAt = time.Time{} }, `job ended after the fault: want "within 5s", got "the job did not end"`},
		{"attempts", func(o *scenario.Outcome) { o.Results.Job.Attempts = nil }, `attempts: want "1", got "0"`},
		{"node status", func(o *scenario.Outcome) { o.Results.Nodes[2].Status = "complete" }, `node server-0 status: want "incomplete", got "complete"`},
		{"node error", func(o *scenario.Outcome) { o.Results.Nodes[2].Error = "" }, `node server-0 error: want "/regex/", got ""`},
		{"node board", func(o *scenario.Outcome) { o.Results.Nodes[2].Board = "sim-9" }, `node server-0 board: want "sim-2", got "sim-9"`},
		{"node absent", func(o *scenario.Outcome) { o.Results.Nodes = o.Results.Nodes[1:] }, `node client-0: want "present", got "absent"`},
		{"test result", func(o *scenario.Outcome) { o.Results.Tests[0].Result = "fail" }, `test client-0 connect/connect: want "pass", got "fail"`},
		{"test in another suite", func(o *scenario.Outcome) { o.Results.Tests[0].Suite = "other" }, `test client-0 connect/connect: want "pass", got "absent"`},
		{"test absent", func(o *scenario.Outcome) { o.Results.Tests = o.Results.Tests[1:] }, `test client-0 connect/connect: want "pass", got "absent"`},
		{"test present but must be absent", func(o *scenario.Outcome) {
			o.Results.Tests = append(o.Results.Tests, report.Test{Node: "client-1", Suite: "connect", Name: "greeting", Result: "fail"},
				report.Test{Node: "client-1", Suite: "x", Name: "greeting", Result: "pass"})
		}, `test client-1 greeting: want "absent", got "fail, pass"`},
		{"board health", func(o *scenario.Outcome) { o.Boards["sim-2"] = "good" }, `board sim-2 health: want "bad", got "good"`},
		{"board absent", func(o *scenario.Outcome) { delete(o.Boards, "sim-0") }, `board sim-0 health: want "good", got "absent"`},
	}
	e := fullScenario().Expect
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := holding()
			tt.change(&o)
			diffs := e.Check(o)
			if assert.Len(t, diffs, 1, "%v", diffs) {
				assert.Equal(t, tt.want, diffs[0].String())
			}
		})
	}
}

func TestCheckOrderAndNoResults(t *testing.T) {
	e := fullScenario().Expect
	o := holding()
	o.Results.Job.Status = "complete"
	o.Exit = 0
	o.Boards = nil
	o.Results.Nodes[0].Status = "canceled"
	o.Results.Nodes[2].Status = "complete"
	want := []scenario.Diff{
		{What: "job status", Want: "incomplete", Got: "complete"},
		{What: "exit code", Want: "2", Got: "0"},
		{What: "node client-0 status", Want: "complete", Got: "canceled"},
		{What: "node server-0 status", Want: "incomplete", Got: "complete"},
		{What: "board sim-0 health", Want: "good", Got: "absent"},
		{What: "board sim-2 health", Want: "bad", Got: "absent"},
	}
	for range 5 { // map iteration order must not leak into the result
		assert.Equal(t, want, e.Check(o))
	}

	o = holding()
	o.Results = nil
	assert.Equal(t, []scenario.Diff{{What: "results", Want: "present", Got: "absent"}}, e.Check(o))
}

func TestCheckWithinExactly(t *testing.T) {
	e := scenario.Expect{Within: time.Second}
	assert.Empty(t, e.Check(scenario.Outcome{FaultAt: t0, EndedAt: t0.Add(time.Second)}))
	assert.Equal(t, []scenario.Diff{{What: "job ended after the fault", Want: "within 1s", Got: "after 1.001s"}},
		e.Check(scenario.Outcome{FaultAt: t0, EndedAt: t0.Add(time.Second + time.Millisecond)}))
}
