package scenario_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/scenario"
)

const full = `name = "client dies mid-barrier"
seed = 7
job = "../examples/relay.toml"
lab = "labs/four-sim.toml"

[[fault]]
node = "client-1"
kind = "power-loss"
when = "test:serve"
after = "500ms"

[[fault]]
role = "client"
kind = "console-noise"
when = "console:login:\\s*$"
rate = 50.0

[[fault]]
board = "sim-2"
kind = "console-drop"
probability = 0.01

[[fault]]
node = "server-0"
kind = "console-slow"
when = "deploy"
baud = 9600

[[fault]]
node = "server-0"
kind = "slow-boot"
duration = "2s"

[[fault]]
node = "client-0"
kind = "console-disconnect"

[expect]
status = "incomplete"
exit = 2
error = "client-1"
class = "infrastructure"
within = "5s"
attempts = 1

[expect.nodes.server-0]
status = "incomplete"
error = "regex"
board = "sim-2"

[expect.nodes.client-0]
status = "complete"

[[expect.tests]]
node = "client-0"
suite = "connect"
name = "connect"
result = "pass"

[[expect.tests]]
node = "client-1"
name = "greeting"
result = "absent"

[expect.boards]
sim-2 = "bad"
sim-0 = "good"
`

func intp(n int) *int { return &n }

func fullScenario() *scenario.Scenario {
	return &scenario.Scenario{
		Name:    "client dies mid-barrier",
		Seed:    7,
		File:    "scenarios/full.toml",
		JobPath: "examples/relay.toml",
		LabPath: "scenarios/labs/four-sim.toml",
		Faults: []scenario.Fault{
			{Node: "client-1", Kind: "power-loss", When: "test:serve", After: 500 * time.Millisecond, Line: 6},
			{Role: "client", Kind: "console-noise", When: `console:login:\s*$`, Rate: 50, Line: 12},
			{Board: "sim-2", Kind: "console-drop", When: "boot", Probability: 0.01, Line: 18},
			{Node: "server-0", Kind: "console-slow", When: "deploy", Baud: 9600, Line: 23},
			{Node: "server-0", Kind: "slow-boot", When: "boot", Duration: 2 * time.Second, Line: 29},
			{Node: "client-0", Kind: "console-disconnect", When: "boot", Line: 34},
		},
		Expect: scenario.Expect{
			Status:   "incomplete",
			Exit:     intp(2),
			Error:    "client-1",
			Class:    "infrastructure",
			Within:   5 * time.Second,
			Attempts: intp(1),
			Nodes: map[string]scenario.NodeExpect{
				"server-0": {Status: "incomplete", Error: "regex", Board: "sim-2"},
				"client-0": {Status: "complete"},
			},
			Tests: []scenario.TestExpect{
				{Node: "client-0", Suite: "connect", Name: "connect", Result: "pass"},
				{Node: "client-1", Name: "greeting", Result: "absent"},
			},
			Boards: map[string]string{"sim-2": "bad", "sim-0": "good"},
		},
	}
}

func TestParseFull(t *testing.T) {
	s, err := scenario.Parse("scenarios/full.toml", []byte(full))
	require.NoError(t, err)
	assert.Equal(t, fullScenario(), s)

	kind, arg := s.Faults[1].Trigger()
	assert.Equal(t, "console", kind)
	assert.Equal(t, `login:\s*$`, arg)
	kind, arg = s.Faults[2].Trigger()
	assert.Equal(t, "boot", kind)
	assert.Empty(t, arg)
}

func TestParseMinimal(t *testing.T) {
	s, err := scenario.Parse("/abs/s.toml", []byte("name = \"m\"\nseed = 0\njob = \"/jobs/j.yaml\"\n"))
	require.NoError(t, err)
	assert.Equal(t, &scenario.Scenario{Name: "m", File: "/abs/s.toml", JobPath: "/jobs/j.yaml"}, s)
}

const inline = `name = "inline"
seed = 3

[job]
name = "pair"
timeout = "2m"

[job.roles.server]
device_type = "sim"
essential = true

[job.roles.client]
device_type = "sim"
count = 2

[[job.action]]
type = "boot"

[[job.action]]
type = "test"
roles = ["client"]
name = "connect"
run = '''
echo "it's \"quoted\""
troupe-sync done
'''

[[fault]]
role = "client"
kind = "kernel-panic"
when = "test:connect"
`

func TestParseInlineJob(t *testing.T) {
	s, err := scenario.Parse("dir/inline.toml", []byte(inline))
	require.NoError(t, err)
	assert.Empty(t, s.JobPath)
	require.NotEmpty(t, s.JobTOML)
	j, err := jobs.Parse(s.File, []byte(s.JobTOML))
	require.NoError(t, err)
	assert.Equal(t, "pair", j.Name)
	assert.Equal(t, 2*time.Minute, j.Timeout)
	require.Len(t, j.Roles, 2)
	assert.Equal(t, jobs.Role{Name: "client", DeviceType: "sim", Count: 2, Timeout: jobs.DefaultMultinodeTimeout}, j.Roles[0])
	assert.True(t, j.Roles[1].Essential)
	require.Len(t, j.Actions, 2)
	assert.Equal(t, jobs.Boot, j.Actions[0].Type)
	assert.Equal(t, "connect", j.Actions[1].Name)
	assert.Equal(t, []string{"client"}, j.Actions[1].Roles)
	assert.Equal(t, "echo \"it's \\\"quoted\\\"\"\ntroupe-sync done\n", j.Actions[1].Run)

	// An inline table works too.
	s, err = scenario.Parse("s.toml", []byte("name = \"x\"\nseed = 1\njob = {name = \"j\", roles = {a = {device_type = \"s\"}}, action = [{type = \"boot\"}]}\n"))
	require.NoError(t, err)
	j, err = jobs.Parse(s.File, []byte(s.JobTOML))
	require.NoError(t, err)
	assert.Equal(t, "j", j.Name)
	assert.Len(t, j.Actions, 1)
}

func TestParseErrors(t *testing.T) {
	const head = "name = \"s\"\nseed = 1\njob = \"j.toml\"\n" // 3 lines
	fault := func(body string) string { return head + "[[fault]]\n" + body }
	expect := func(body string) string { return head + "[expect]\n" + body }
	tests := []struct{ name, src, want string }{
		// Unknown keys at every level.
		{"unknown top-level key", head + "seeds = 2\n", `s.toml:4: unknown key "seeds"`},
		{"unknown fault key", fault("node = \"a\"\nkind = \"power-loss\"\nwhen_ = \"boot\"\n"), `s.toml:7: fault[0]: unknown key "when_"`},
		{"unknown expect key", expect("statuss = \"complete\"\n"), `s.toml:5: expect: unknown key "statuss"`},
		{"unknown node expect key", expect("[expect.nodes.a]\nstatus = \"complete\"\nclass = \"test\"\n"), `s.toml:7: expect.nodes.a: unknown key "class"`},
		{"unknown test expect key", expect("[[expect.tests]]\nnode = \"a\"\nname = \"b\"\nresult = \"pass\"\nmeasurement = 1\n"), `s.toml:9: expect.tests[0]: unknown key "measurement"`},
		{"unknown inline job key", head[:len(head)-len("job = \"j.toml\"\n")] + "[job]\nname = \"j\"\n[job.roles.a]\ndevice_type = \"sim\"\ncolor = \"red\"\n[[job.action]]\ntype = \"boot\"\n", `s.toml:7: job.roles.a: unknown key "color"`},
		// Top level.
		{"missing name", "seed = 1\njob = \"j.toml\"\n", `s.toml: name: is required`},
		{"empty name", strings.Replace(head, `"s"`, `" "`, 1), `s.toml:1: name: must not be empty`},
		{"missing seed", "name = \"s\"\njob = \"j.toml\"\n", `s.toml: seed: is required`},
		{"negative seed", strings.Replace(head, "seed = 1", "seed = -1", 1), `s.toml:2: seed: must be >= 0 (got -1)`},
		{"seed type", strings.Replace(head, "seed = 1", "seed = \"1\"", 1), `s.toml:2: seed: must be an integer (got string "1")`},
		{"neither job nor [job]", "name = \"s\"\nseed = 1\n", `s.toml: job: is required: a job file path (job = "relay.toml") or an inline [job] table`},
		{"job and [job]", head + "[job]\nname = \"j\"\n", `s.toml:4: job: a job file path and a [job] table: give exactly one of them`},
		{"empty job", strings.Replace(head, `"j.toml"`, `""`, 1), `s.toml:3: job: must not be empty`},
		{"job type", strings.Replace(head, `"j.toml"`, `3`, 1), `s.toml:3: job: must be a job file path or a [job] table (got integer 3)`},
		{"invalid inline job", "name = \"s\"\nseed = 1\n[job]\nname = \"j\"\n[job.roles.a]\ndevice_type = \"sim\"\ncount = 0\n[[job.action]]\ntype = \"boot\"\n", `s.toml:7: job.roles.a.count: must be >= 1 (got 0)`},
		{"inline job missing key", "name = \"s\"\nseed = 1\n[job]\nname = \"j\"\n[[job.action]]\ntype = \"boot\"\n", `s.toml:3: job.roles: is required`},
		{"lab type", head + "lab = false\n", `s.toml:4: lab: must be a string (got boolean false)`},
		{"fault not a table", head + "fault = [1]\n", `s.toml:4: fault[0]: must be a table (got integer 1)`},
		// Faults.
		{"bad kind", fault("node = \"a\"\nkind = \"meteor\"\n"), `s.toml:6: fault[0].kind: must be one of boot-hang, slow-boot, kernel-panic, no-login-prompt, console-noise, console-drop, console-slow, console-disconnect, power-loss, power-fail, power-lie, deploy-fail, shell-hang (got "meteor")`},
		{"missing kind", fault("node = \"a\"\n"), `s.toml:4: fault[0].kind: is required`},
		{"bad when", fault("node = \"a\"\nkind = \"power-loss\"\nwhen = \"login\"\n"), `s.toml:7: fault[0].when: must be "boot", "deploy", "test:<name>" or "console:<regexp>" (got "login")`},
		{"empty test name", fault("node = \"a\"\nkind = \"power-loss\"\nwhen = \"test:\"\n"), `s.toml:7: fault[0].when: test: needs the name of a test action (got "test:")`},
		{"empty console regexp", fault("node = \"a\"\nkind = \"power-loss\"\nwhen = \"console:\"\n"), `s.toml:7: fault[0].when: console: needs a regular expression (got "console:")`},
		{"bad console regexp", fault("node = \"a\"\nkind = \"power-loss\"\nwhen = \"console:login(\"\n"), `s.toml:7: fault[0].when: invalid regular expression "login(": missing closing )`},
		{"node and board", fault("node = \"a\"\nboard = \"b\"\nkind = \"power-loss\"\n"), `s.toml:4: fault[0]: exactly one of node, board and role is allowed (got node and board)`},
		{"node board and role", fault("node = \"a\"\nboard = \"b\"\nrole = \"c\"\nkind = \"power-loss\"\n"), `s.toml:4: fault[0]: exactly one of node, board and role is allowed (got node and board and role)`},
		{"no target", fault("kind = \"power-loss\"\n"), `s.toml:4: fault[0]: exactly one of node, board and role is required`},
		{"empty node", fault("node = \"\"\nkind = \"power-loss\"\n"), `s.toml:5: fault[0].node: must not be empty`},
		{"bad after", fault("node = \"a\"\nkind = \"power-loss\"\nafter = \"soon\"\n"), `s.toml:7: fault[0].after: invalid duration "soon"`},
		{"negative after", fault("node = \"a\"\nkind = \"power-loss\"\nafter = \"-1s\"\n"), `s.toml:7: fault[0].after: must be >= 0 (got "-1s")`},
		{"after type", fault("node = \"a\"\nkind = \"power-loss\"\nafter = 5\n"), `s.toml:7: fault[0].after: must be a duration string such as "90s" or "5m" (got integer 5)`},
		{"bad duration", fault("node = \"a\"\nkind = \"slow-boot\"\nduration = \"2 s\"\n"), `s.toml:7: fault[0].duration: invalid duration "2 s"`},
		{"zero duration", fault("node = \"a\"\nkind = \"console-disconnect\"\nduration = \"0s\"\n"), `s.toml:7: fault[0].duration: must be > 0 (got "0s")`},
		// Parameters on the wrong kind, and missing.
		{"duration on power-loss", fault("node = \"a\"\nkind = \"power-loss\"\nduration = \"1s\"\n"), `s.toml:7: fault[0].duration: not allowed on a power-loss fault (only on slow-boot, console-disconnect)`},
		{"rate on console-drop", fault("node = \"a\"\nkind = \"console-drop\"\nprobability = 0.5\nrate = 1.0\n"), `s.toml:8: fault[0].rate: not allowed on a console-drop fault (only on console-noise)`},
		{"probability on noise", fault("node = \"a\"\nkind = \"console-noise\"\nrate = 1\nprobability = 0.5\n"), `s.toml:8: fault[0].probability: not allowed on a console-noise fault (only on console-drop)`},
		{"baud on shell-hang", fault("node = \"a\"\nkind = \"shell-hang\"\nbaud = 9600\n"), `s.toml:7: fault[0].baud: not allowed on a shell-hang fault (only on console-slow)`},
		{"missing rate", fault("node = \"a\"\nkind = \"console-noise\"\n"), `s.toml:4: fault[0].rate: is required`},
		{"missing probability", fault("node = \"a\"\nkind = \"console-drop\"\n"), `s.toml:4: fault[0].probability: is required`},
		{"missing baud", fault("node = \"a\"\nkind = \"console-slow\"\n"), `s.toml:4: fault[0].baud: is required`},
		{"missing slow-boot duration", fault("node = \"a\"\nkind = \"slow-boot\"\n"), `s.toml:4: fault[0].duration: is required`},
		{"probability > 1", fault("node = \"a\"\nkind = \"console-drop\"\nprobability = 1.5\n"), `s.toml:7: fault[0].probability: must be > 0 and <= 1 (got 1.5)`},
		{"probability 0", fault("node = \"a\"\nkind = \"console-drop\"\nprobability = 0\n"), `s.toml:7: fault[0].probability: must be > 0 and <= 1 (got 0)`},
		{"probability nan", fault("node = \"a\"\nkind = \"console-drop\"\nprobability = nan\n"), `s.toml:7: fault[0].probability: must be > 0 and <= 1 (got NaN)`},
		{"negative rate", fault("node = \"a\"\nkind = \"console-noise\"\nrate = -3.5\n"), `s.toml:7: fault[0].rate: must be a number of bytes per second > 0 (got -3.5)`},
		{"infinite rate", fault("node = \"a\"\nkind = \"console-noise\"\nrate = inf\n"), `s.toml:7: fault[0].rate: must be a number of bytes per second > 0 (got +Inf)`},
		{"rate type", fault("node = \"a\"\nkind = \"console-noise\"\nrate = \"fast\"\n"), `s.toml:7: fault[0].rate: must be a number (got string "fast")`},
		{"zero baud", fault("node = \"a\"\nkind = \"console-slow\"\nbaud = 0\n"), `s.toml:7: fault[0].baud: must be > 0 (got 0)`},
		{"second fault", fault("node = \"a\"\nkind = \"power-loss\"\n[[fault]]\nrole = \"r\"\nkind = \"boot\"\n"), `s.toml:9: fault[1].kind: must be one of boot-hang, slow-boot, kernel-panic, no-login-prompt, console-noise, console-drop, console-slow, console-disconnect, power-loss, power-fail, power-lie, deploy-fail, shell-hang (got "boot")`},
		// Expectations.
		{"bad status", expect("status = \"done\"\n"), `s.toml:5: expect.status: must be one of complete, incomplete, canceled (got "done")`},
		{"bad exit", expect("exit = 4\n"), `s.toml:5: expect.exit: must be between 0 and 3 (got 4)`},
		{"bad error regexp", expect("error = \"[a-\"\n"), `s.toml:5: expect.error: invalid regular expression "[a-": missing closing ]`},
		{"bad class", expect("class = \"board\"\n"), `s.toml:5: expect.class: must be one of infrastructure, test, job (got "board")`},
		{"bad within", expect("within = \"5\"\n"), `s.toml:5: expect.within: invalid duration "5"`},
		{"zero within", expect("within = \"0s\"\n"), `s.toml:5: expect.within: must be > 0 (got "0s")`},
		{"negative attempts", expect("attempts = -1\n"), `s.toml:5: expect.attempts: must be >= 0 (got -1)`},
		{"bad node status", expect("[expect.nodes.a]\nstatus = \"dead\"\n"), `s.toml:6: expect.nodes.a.status: must be one of complete, incomplete, canceled (got "dead")`},
		{"missing node status", expect("[expect.nodes.a]\nboard = \"sim-0\"\n"), `s.toml:5: expect.nodes.a.status: is required`},
		{"bad node error", expect("[expect.nodes.a]\nstatus = \"complete\"\nerror = \"a(?P<\"\n"), `s.toml:7: expect.nodes.a.error: invalid regular expression "a(?P<": invalid or unsupported Perl syntax at "(?P"`},
		{"node not a table", expect("nodes = { a = \"complete\" }\n"), `s.toml:5: expect.nodes.a: must be a table (got string "complete")`},
		{"bad test result", expect("[[expect.tests]]\nnode = \"a\"\nname = \"b\"\nresult = \"passed\"\n"), `s.toml:8: expect.tests[0].result: must be one of pass, fail, skip, unknown, absent (got "passed")`},
		{"missing test name", expect("[[expect.tests]]\nnode = \"a\"\nresult = \"pass\"\n"), `s.toml:5: expect.tests[0].name: is required`},
		{"empty test node", expect("[[expect.tests]]\nnode = \"\"\nname = \"b\"\nresult = \"pass\"\n"), `s.toml:6: expect.tests[0].node: must not be empty`},
		{"bad board health", expect("[expect.boards]\nsim-0 = \"broken\"\n"), `s.toml:6: expect.boards.sim-0: must be one of unknown, good, bad, maintenance, retired (got "broken")`},
		{"board health type", expect("[expect.boards]\nsim-0 = 1\n"), `s.toml:6: expect.boards.sim-0: must be a string (got integer 1)`},
		{"syntax error", head + "[[fault]\n", `s.toml:5: TOML syntax error: expected end of table array name delimiter ']', but got '\n' instead`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := scenario.Parse("s.toml", []byte(tt.src))
			require.Error(t, err)
			assert.Nil(t, s)
			var errs jobs.Errors
			require.ErrorAs(t, err, &errs)
			assert.Contains(t, strings.Split(err.Error(), "\n"), tt.want)
		})
	}
}

func TestParseCollectsAllErrors(t *testing.T) {
	src := `name = "s"
seed = -2
job = "j.toml"
[[fault]]
node = "a"
board = "b"
kind = "console-drop"
probability = 2.0
baud = 1
[expect]
exit = 9
[expect.boards]
sim-0 = "ok"
`
	_, err := scenario.Parse("s.toml", []byte(src))
	require.Error(t, err)
	assert.Equal(t, `s.toml:2: seed: must be >= 0 (got -2)
s.toml:4: fault[0]: exactly one of node, board and role is allowed (got node and board)
s.toml:8: fault[0].probability: must be > 0 and <= 1 (got 2)
s.toml:9: fault[0].baud: not allowed on a console-drop fault (only on console-slow)
s.toml:11: expect.exit: must be between 0 and 3 (got 9)
s.toml:13: expect.boards.sim-0: must be one of unknown, good, bad, maintenance, retired (got "ok")`, err.Error())
	var one *jobs.Error
	require.ErrorAs(t, err, &one)
	assert.Equal(t, "seed", one.Key)
	assert.Equal(t, 2, one.Line)
}

func TestLoadAndLoadDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(src), 0o600))
		return p
	}
	ok := "name = \"%s\"\nseed = 1\njob = \"../examples/relay.toml\"\n"
	write("b.toml", strings.Replace(ok, "%s", "b", 1))
	write("a.toml", strings.Replace(ok, "%s", "a", 1))
	write("notes.md", "not a scenario")
	write("sub/c.toml", strings.Replace(ok, "%s", "c", 1)) // not recursive
	bad := write("sub/bad.toml", "name = 1\nseed = 1\njob = \"j\"\n")
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.Mkdir(empty, 0o755))

	s, err := scenario.Load(filepath.Join(dir, "a.toml"))
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(filepath.Dir(dir), "examples/relay.toml"), s.JobPath)
	_, err = scenario.Load(filepath.Join(dir, "none.toml"))
	assert.ErrorIs(t, err, os.ErrNotExist)

	got, err := scenario.LoadDir(dir, filepath.Join(dir, "sub/c.toml"))
	require.NoError(t, err)
	var names []string
	for _, s := range got {
		names = append(names, s.Name)
	}
	assert.Equal(t, []string{"a", "b", "c"}, names)

	got, err = scenario.LoadDir(bad, dir, filepath.Join(dir, "missing.toml"), empty)
	require.Error(t, err)
	assert.Len(t, got, 2, "the valid scenarios are still returned")
	var errs jobs.Errors
	require.ErrorAs(t, err, &errs)
	assert.ErrorIs(t, err, os.ErrNotExist)
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, 3)
	assert.Equal(t, bad+`:1: name: must be a string (got integer 1)`, lines[0])
	assert.Contains(t, lines[1], "missing.toml")
	assert.Equal(t, "load scenarios: no *.toml files in "+empty, lines[2])
}
