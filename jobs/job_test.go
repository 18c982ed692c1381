package jobs_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
)

const smokeRun = `echo "I am $TROUPE_NODE ($TROUPE_ROLE) in job $TROUPE_JOB"
troupe-test-case ping --shell true
`

func smokeJob() *jobs.Job {
	return &jobs.Job{
		Name:             "smoke",
		Timeout:          10 * time.Minute,
		Priority:         40,
		MultinodeTimeout: 2 * time.Minute,
		Roles: []jobs.Role{
			{Name: "client", DeviceType: "sim", Count: 3, Timeout: 2 * time.Minute},
			{Name: "server", DeviceType: "sim", Count: 1, Essential: true, Tags: []string{"usb"}, Timeout: time.Minute},
		},
		Actions: []jobs.Action{
			{Index: 0, Type: jobs.Deploy, Roles: []string{"server", "client"}, Image: "testdata/images/rootfs.tar", Timeout: 5 * time.Minute, Line: 19},
			{Index: 1, Type: jobs.Boot, Roles: []string{"client", "server"}, Timeout: 2 * time.Minute, Line: 25},
			{Index: 2, Type: jobs.Test, Roles: []string{"server"}, Name: "serve", Timeout: time.Minute, Run: smokeRun, Line: 29},
		},
		File: "testdata/smoke.toml",
	}
}

func TestLoadFullExample(t *testing.T) {
	j, err := jobs.Load("testdata/smoke.toml")
	require.NoError(t, err)
	assert.Equal(t, smokeJob(), j)
}

func TestLoadMissingFile(t *testing.T) {
	_, err := jobs.Load("testdata/nope.toml")
	require.Error(t, err)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Contains(t, err.Error(), "testdata/nope.toml")
}

const minimal = `name = "m"
[roles.b]
device_type = "sim"
[roles.a]
device_type = "qemu"
[[action]]
type = "deploy"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "t"
run = "true"
`

func TestParseDefaults(t *testing.T) {
	j, err := jobs.Parse("", []byte(minimal))
	require.NoError(t, err)
	want := &jobs.Job{
		Name:             "m",
		Timeout:          30 * time.Minute,
		Priority:         50,
		MultinodeTimeout: 5 * time.Minute,
		Roles: []jobs.Role{
			{Name: "a", DeviceType: "qemu", Count: 1, Timeout: 5 * time.Minute},
			{Name: "b", DeviceType: "sim", Count: 1, Timeout: 5 * time.Minute},
		},
		Actions: []jobs.Action{
			{Index: 0, Type: jobs.Deploy, Roles: []string{"a", "b"}, Timeout: 10 * time.Minute, Line: 6},
			{Index: 1, Type: jobs.Boot, Roles: []string{"a", "b"}, Timeout: 5 * time.Minute, Line: 8},
			{Index: 2, Type: jobs.Test, Roles: []string{"a", "b"}, Name: "t", Run: "true", Line: 10},
		},
	}
	assert.Equal(t, want, j)
}

func TestParseActionTimeoutZeroMeansDefault(t *testing.T) {
	src := strings.Replace(minimal, `type = "deploy"`, `type = "deploy"`+"\ntimeout = \"0s\"", 1)
	j, err := jobs.Parse("job.toml", []byte(src))
	require.NoError(t, err)
	assert.Equal(t, 10*time.Minute, j.Actions[0].Timeout)
}

// base is a valid job; the error cases below change it.
const base = `name = "smoke"
timeout = "10m"
priority = 50
[multinode]
timeout = "2m"
[roles.server]
device_type = "sim"
count = 1
[roles.client]
device_type = "sim"
count = 3
[[action]]
type = "deploy"
roles = ["server", "client"]
image = "images/rootfs.tar"
[[action]]
type = "boot"
timeout = "2m"
[[action]]
type = "test"
roles = ["server"]
name = "serve"
run = "true"
`

// edit replaces old (which must occur in base) by new.
func edit(t *testing.T, old, new string) string {
	t.Helper()
	require.Contains(t, base, old)
	return strings.Replace(base, old, new, 1)
}

func TestParseBase(t *testing.T) {
	_, err := jobs.Parse("job.toml", []byte(base))
	require.NoError(t, err)
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, old, new string // base with old replaced by new; new alone if old is ""
		want           string // one full line of the error
	}{
		{"unknown top-level key", `timeout = "10m"`, `timout = "10m"`, `job.toml:2: unknown key "timout"`},
		{"unknown key in role", "count = 3", "cnt = 3", `job.toml:11: roles.client: unknown key "cnt"`},
		{"unknown key in multinode", `timeout = "2m"` + "\n[roles", `timeout = "2m"` + "\nretries = 2\n[roles", `job.toml:6: multinode: unknown key "retries"`},
		{"unknown key in action", `type = "boot"`, `type = "boot"` + "\nimg = 1", `job.toml:18: action[1]: unknown key "img"`},
		{"wrong type", "count = 3", `count = "three"`, `job.toml:11: roles.client.count: must be an integer (got string "three")`},
		{"wrong type in array", `roles = ["server"]`, `roles = ["server", 2]`, `job.toml:21: action[2].roles[1]: must be a string (got integer 2)`},
		{"role not a table", "[roles.server]\ndevice_type = \"sim\"\ncount = 1\n", "[roles]\nserver = 1\n", `job.toml:7: roles.server: must be a table (got integer 1)`},
		{"bad duration", `timeout = "2m"` + "\n[[action]]", `timeout = "fast"` + "\n[[action]]", `job.toml:18: action[1].timeout: invalid duration "fast"`},
		{"duration not a string", `timeout = "10m"`, `timeout = 600`, `job.toml:2: timeout: must be a duration string such as "90s" or "5m" (got integer 600)`},
		{"zero duration", `timeout = "10m"`, `timeout = "0s"`, `job.toml:2: timeout: must be > 0 (got "0s")`},
		{"negative duration", `timeout = "2m"` + "\n[roles", `timeout = "-2m"` + "\n[roles", `job.toml:5: multinode.timeout: must be > 0 (got "-2m")`},
		{"negative role timeout", "count = 3", "count = 3\ntimeout = \"-1s\"", `job.toml:12: roles.client.timeout: must be > 0 (got "-1s")`},
		{"negative action timeout", `timeout = "2m"` + "\n[[action]]", `timeout = "-2m"` + "\n[[action]]", `job.toml:18: action[1].timeout: must not be negative (got "-2m")`},
		{"undefined role", `roles = ["server"]`, `roles = ["srv"]`, `job.toml:21: action[2].roles: undefined role "srv"`},
		{"duplicate role", `roles = ["server"]`, `roles = ["server", "server"]`, `job.toml:21: action[2].roles: duplicate role "server"`},
		{"empty roles", `roles = ["server"]`, `roles = []`, `job.toml:21: action[2].roles: must not be empty (omit it to run on all roles)`},
		{"duplicate test names", `run = "true"`, "run = \"true\"\n[[action]]\ntype = \"test\"\nname = \"serve\"\nrun = \"x\"", `job.toml:26: action[3].name: duplicate test name "serve" (also used by action[2])`},
		{"count zero", "count = 3", "count = 0", `job.toml:11: roles.client.count: must be >= 1 (got 0)`},
		{"count negative", "count = 3", "count = -4", `job.toml:11: roles.client.count: must be >= 1 (got -4)`},
		{"too many nodes", "count = 3", "count = 10000", `job.toml:6: roles: the job has 10001 nodes; at most 10000 are allowed`},
		{"missing name", `name = "smoke"`, ``, `job.toml: name: is required`},
		{"empty name", `name = "smoke"`, `name = ""`, `job.toml:1: name: must not be empty`},
		{"bad name", `name = "smoke"`, `name = "smoke test"`, `job.toml:1: name: must contain only letters, digits, '_', '.' and '-' (got "smoke test")`},
		{"bad role name", "[roles.client]", "[roles.client-a]", `job.toml:9: roles.client-a: must contain only letters, digits and '_' (got "client-a")`},
		{"missing device type", "device_type = \"sim\"\ncount = 3", "count = 3", `job.toml:9: roles.client.device_type: is required`},
		{"no roles", "", "name = \"x\"\nroles = {}\n[[action]]\ntype = \"boot\"\n", `job.toml:2: roles: at least one role is required`},
		{"missing roles", "[roles.server]\ndevice_type = \"sim\"\ncount = 1\n[roles.client]\ndevice_type = \"sim\"\ncount = 3\n", "", `job.toml: roles: is required`},
		{"no actions", "", "name = \"x\"\naction = []\n[roles.a]\ndevice_type = \"sim\"\n", `job.toml:2: action: at least one action is required`},
		{"missing run", `run = "true"`, ``, `job.toml:19: action[2].run: is required`},
		{"empty run", `run = "true"`, `run = " \n "`, `job.toml:23: action[2].run: must not be empty`},
		{"missing test name", `name = "serve"`, ``, `job.toml:19: action[2].name: is required`},
		{"bad test name", `name = "serve"`, `name = "a/b"`, `job.toml:22: action[2].name: must contain only letters, digits, '_', '.' and '-' (got "a/b")`},
		{"missing type", `type = "boot"`, ``, `job.toml:16: action[1].type: is required`},
		{"unknown type", `type = "boot"`, `type = "reboot"`, `job.toml:17: action[1].type: must be one of deploy, boot, test (got "reboot")`},
		{"priority 101", "priority = 50", "priority = 101", `job.toml:3: priority: must be between 0 and 100 (got 101)`},
		{"priority negative", "priority = 50", "priority = -1", `job.toml:3: priority: must be between 0 and 100 (got -1)`},
		{"image on boot", `type = "boot"`, `type = "boot"` + "\nimage = \"x\"", `job.toml:18: action[1].image: not allowed on a boot action`},
		{"run on deploy", `type = "deploy"`, `type = "deploy"` + "\nrun = \"x\"", `job.toml:14: action[0].run: not allowed on a deploy action`},
		{"name on boot", `type = "boot"`, `type = "boot"` + "\nname = \"x\"", `job.toml:18: action[1].name: not allowed on a boot action`},
		{"syntax error", "count = 3", "count = ", `job.toml:11: roles.client.count: TOML syntax error: expected value but found '\n' instead`},
		{"duplicate key", "count = 3", "count = 3\ncount = 4", `job.toml:12: roles.client.count: TOML syntax error: Key 'roles.client.count' has already been defined.`},
		{"action not a table", "", "name = \"x\"\naction = [\n{type = \"boot\"},\n1]\n[roles.a]\ndevice_type = \"sim\"\n", `job.toml:4: action[1]: must be a table (got integer 1)`},
		{"parse not a regexp", `run = "true"`, `run = "true"` + "\nparse = '(x'", `job.toml:24: action[2].parse: not a regular expression: error parsing regexp: missing closing ): ` + "`(x`"},
		{"parse without groups", `run = "true"`, `run = "true"` + "\nparse = '(?P<test_case_id>x)'", `job.toml:24: action[2].parse: needs the named groups (?P<test_case_id>...) and (?P<result>...)`},
		{"fixup without parse", `run = "true"`, `run = "true"` + "\nfixup = {PASS = \"pass\"}", `job.toml:24: action[2].fixup: needs parse`},
		{"fixup to a bad result", `run = "true"`, `run = "true"` + "\nparse = '(?P<test_case_id>\\S+) (?P<result>\\S+)'\nfixup = {PASS = \"ok\"}", `job.toml:25: action[2].fixup.PASS: must be one of pass, fail, skip, unknown (got "ok")`},
		{"parse on boot", `type = "boot"`, `type = "boot"` + "\nparse = 'x'", `job.toml:18: action[1].parse: not allowed on a boot action`},
		{"before unknown call", `type = "boot"`, `type = "boot"` + "\nbefore = [\"shout x\"]", `job.toml:18: action[1].before: "shout x": unknown call "shout" (send, wait, wait-all, sync)`},
		{"before bad id", `type = "boot"`, `type = "boot"` + "\nbefore = [\"wait a<b\"]", `job.toml:18: action[1].before: "wait a<b": invalid message id "a<b" (letters, digits, '.', '_', '-')`},
		{"before send not kv", `type = "boot"`, `type = "boot"` + "\nbefore = [\"send id novalue\"]", `job.toml:18: action[1].before: "send id novalue": "novalue" is not KEY=VALUE`},
		{"before wait-all role", `type = "boot"`, `type = "boot"` + "\nbefore = [\"wait-all id nobody\"]", `job.toml:18: action[1].before: "wait-all id nobody": undefined role "nobody"`},
		{"inline table lines", "[roles.client]\ndevice_type = \"sim\"\ncount = 3\n", "[roles]\nclient = {\n  device_type = \"sim\", count = 0 }\n", `job.toml:11: roles.client.count: must be >= 1 (got 0)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.new
			if tt.old != "" {
				src = edit(t, tt.old, tt.new)
			}
			j, err := jobs.Parse("job.toml", []byte(src))
			require.Error(t, err)
			assert.Nil(t, j)
			var errs jobs.Errors
			require.ErrorAs(t, err, &errs)
			assert.Contains(t, strings.Split(err.Error(), "\n"), tt.want)
		})
	}
}

func TestParseCollectsAllErrors(t *testing.T) {
	src := edit(t, "count = 3", "count = 0\nbogus = true")
	src = strings.Replace(src, `timeout = "10m"`, `timeout = "soon"`, 1)
	src = strings.Replace(src, `roles = ["server"]`, `roles = ["nobody"]`, 1)
	_, err := jobs.Parse("job.toml", []byte(src))
	require.Error(t, err)
	var errs jobs.Errors
	require.ErrorAs(t, err, &errs)
	assert.Equal(t, []string{
		`job.toml:2: timeout: invalid duration "soon"`,
		`job.toml:11: roles.client.count: must be >= 1 (got 0)`,
		`job.toml:12: roles.client: unknown key "bogus"`,
		`job.toml:22: action[2].roles: undefined role "nobody"`,
	}, strings.Split(err.Error(), "\n"))
	require.Len(t, errs, 4)
	assert.Equal(t, &jobs.Error{File: "job.toml", Line: 11, Key: "roles.client.count", Msg: "must be >= 1 (got 0)"}, errs[1])

	var one *jobs.Error
	require.ErrorAs(t, err, &one)
	assert.Equal(t, 2, one.Line)
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  jobs.Error
		want string
	}{
		{jobs.Error{File: "j.toml", Line: 3, Key: "a.b", Msg: "bad"}, "j.toml:3: a.b: bad"},
		{jobs.Error{File: "j.toml", Key: "a.b", Msg: "bad"}, "j.toml: a.b: bad"},
		{jobs.Error{File: "j.toml", Line: 3, Msg: "bad"}, "j.toml:3: bad"},
		{jobs.Error{Line: 3, Key: "k", Msg: "bad"}, "line 3: k: bad"},
		{jobs.Error{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.err.Error())
		})
	}
	assert.Equal(t, "a\nb", jobs.Errors{{Msg: "a"}, {Msg: "b"}}.Error())
}

func TestImagePaths(t *testing.T) {
	tests := []struct{ file, image, want string }{
		{"examples/job.toml", "images/rootfs.tar", "examples/images/rootfs.tar"},
		{"", "images/rootfs.tar", "images/rootfs.tar"},
		{"/abs/job.toml", "img", "/abs/img"},
		{"examples/job.toml", "a//b/", "examples/a/b"},
	}
	for _, tt := range tests {
		t.Run(tt.file+" "+tt.image, func(t *testing.T) {
			src := edit(t, `image = "images/rootfs.tar"`, `image = "`+tt.image+`"`)
			j, err := jobs.Parse(tt.file, []byte(src))
			require.NoError(t, err)
			assert.Equal(t, tt.want, j.Actions[0].Image)

			var buf bytes.Buffer
			require.NoError(t, j.Encode(&buf))
			again, err := jobs.Parse(tt.file, buf.Bytes())
			require.NoError(t, err, buf.String())
			assert.Equal(t, tt.want, again.Actions[0].Image)
		})
	}
}

func TestNodes(t *testing.T) {
	j := smokeJob()
	assert.Equal(t, []jobs.Node{
		{Name: "client-0", Role: "client", Index: 0},
		{Name: "client-1", Role: "client", Index: 1},
		{Name: "client-2", Role: "client", Index: 2},
		{Name: "server-0", Role: "server", Index: 0},
	}, j.Nodes())
}

func TestRole(t *testing.T) {
	j := smokeJob()
	r, ok := j.Role("server")
	require.True(t, ok)
	assert.Equal(t, "usb", r.Tags[0])
	_, ok = j.Role("nobody")
	assert.False(t, ok)
}

func TestActionsFor(t *testing.T) {
	j := smokeJob()
	names := func(as []jobs.Action) []int {
		var idx []int
		for _, a := range as {
			idx = append(idx, a.Index)
		}
		return idx
	}
	assert.Equal(t, []int{0, 1, 2}, names(j.ActionsFor("server")))
	assert.Equal(t, []int{0, 1}, names(j.ActionsFor("client")))
	assert.Empty(t, j.ActionsFor("nobody"))
}

// roundTrip encodes j, parses the result as j.File and checks it gives j
// back (apart from action lines, which depend on the layout).
func roundTrip(t *testing.T, j *jobs.Job) string {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, j.Encode(&buf))
	again, err := jobs.Parse(j.File, buf.Bytes())
	require.NoError(t, err, buf.String())
	assert.Equal(t, withoutLines(j), withoutLines(again), buf.String())
	return buf.String()
}

func withoutLines(j *jobs.Job) *jobs.Job {
	c := *j
	c.Actions = append([]jobs.Action(nil), j.Actions...)
	for i := range c.Actions {
		c.Actions[i].Line = 0
	}
	return &c
}

func TestEncodeRoundTrip(t *testing.T) {
	tests := map[string]string{
		"smoke":   readFile(t, "testdata/smoke.toml"),
		"minimal": minimal,
		"base":    base,
		"awkward strings": edit(t, `run = "true"`, `run = """
it's '''quoted'''
tab	"and" \\ back\u0001slash
"""`),
		"run ending in quote": edit(t, `run = "true"`, "run = '''\necho 'x''''"),
		"single-line run":     edit(t, `run = "true"`, `run = "echo \"hi\""`),
		"long durations":      edit(t, `timeout = "10m"`, `timeout = "26h0m1.5s"`),
		"quoted role name":    edit(t, `device_type = "sim"`, `device_type = "sim \"x\""`),
		"before":              edit(t, `type = "boot"`, `type = "boot"`+"\nbefore = [\"send ready ip=1.2.3.4 port=80\", \"wait go\", \"wait-all up client\", \"sync s\"]"),
		"parse and fixup":     edit(t, `run = "true"`, `run = "true"`+"\nparse = '^(?P<test_case_id>[^:]+): \"?(?P<result>\\w+)'\nfixup = {PASS = \"pass\", \"FAIL it\" = \"fail\"}"),
	}
	for name, src := range tests {
		t.Run(name, func(t *testing.T) {
			j, err := jobs.Parse("dir/job.toml", []byte(src))
			require.NoError(t, err)
			roundTrip(t, j)
		})
	}
}

func TestEncodeFormat(t *testing.T) {
	j, err := jobs.Load("testdata/smoke.toml")
	require.NoError(t, err)
	out := roundTrip(t, j)
	assert.Equal(t, `name = "smoke"
timeout = "10m"
priority = 40

[multinode]
timeout = "2m"

[roles.client]
device_type = "sim"
count = 3

[roles.server]
device_type = "sim"
count = 1
essential = true
tags = ["usb"]
timeout = "1m"

[[action]]
type = "deploy"
roles = ["server", "client"]
image = "images/rootfs.tar"
timeout = "5m"

[[action]]
type = "boot"
roles = ["client", "server"]
timeout = "2m"

[[action]]
type = "test"
roles = ["server"]
name = "serve"
timeout = "1m"
run = '''
`+smokeRun+`'''
`, out)
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestEncodeWriteError(t *testing.T) {
	err := smokeJob().Encode(failingWriter{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "disk full")
	assert.Contains(t, err.Error(), "smoke")
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.FromSlash(path))
	require.NoError(t, err)
	return string(data)
}
