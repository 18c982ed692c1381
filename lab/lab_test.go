package lab_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
)

const labFile = `[[board]]
name = "sim-0"
device_type = "sim"
tags = ["usb"]
backend = "sim"

[[board]]
name = "rpi.4_b-1"
device_type = "rpi4"
`

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lab.toml")
	require.NoError(t, os.WriteFile(path, []byte(labFile), 0o600))
	l, err := lab.Load(path)
	require.NoError(t, err)
	assert.Equal(t, &lab.Lab{File: path, Retries: lab.DefaultRetries, BadAfter: lab.DefaultBadAfter, Boards: []lab.Board{
		{Name: "sim-0", DeviceType: "sim", Tags: []string{"usb"}, Backend: "sim", Line: 1},
		{Name: "rpi.4_b-1", DeviceType: "rpi4", Backend: "sim", Line: 7},
	}}, l)

	_, err = lab.Load(filepath.Join(t.TempDir(), "none.toml"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestSandboxKey(t *testing.T) {
	for src, want := range map[string]string{"": "", `sandbox = "none"`: lab.SandboxNone, `sandbox = "namespaces"`: lab.SandboxNamespaces} {
		l, err := lab.Parse("lab.toml", []byte(src+"\n"+labFile))
		require.NoError(t, err, src)
		assert.Equal(t, want, l.Sandbox, src)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"unknown top-level key", "boards = 1\n" + labFile, `lab.toml:1: unknown key "boards"`},
		{"unknown board key", strings.Replace(labFile, `backend = "sim"`, `backend = "sim"`+"\nserial = 1", 1), `lab.toml:6: board "sim-0": unknown key "serial"`},
		{"missing name", strings.Replace(labFile, `name = "rpi.4_b-1"`, ``, 1), `lab.toml:7: board[1].name: is required`},
		{"missing device type", strings.Replace(labFile, `device_type = "rpi4"`, ``, 1), `lab.toml:7: board "rpi.4_b-1": device_type: is required`},
		{"bad name", strings.Replace(labFile, `"rpi.4_b-1"`, `"rpi 4"`, 1), `lab.toml:8: board[1].name: must contain only letters, digits, '_', '.' and '-' (got "rpi 4")`},
		{"duplicate name", strings.Replace(labFile, `"rpi.4_b-1"`, `"sim-0"`, 1), `lab.toml:8: board "sim-0": name: duplicate board name "sim-0" (also the name of the board at line 1)`},
		{"wrong type", strings.Replace(labFile, `tags = ["usb"]`, `tags = "usb"`, 1), `lab.toml:4: board "sim-0": tags: must be an array of strings (got string "usb")`},
		{"unsupported backend", strings.Replace(labFile, `backend = "sim"`, `backend = "vbox"`, 1), `lab.toml:5: board "sim-0": backend: backend "vbox" is not supported (supported: sim, hardware, qemu)`},
		{"hardware table", labFile + "[board.hardware]\nserial = \"/dev/x\"\n", `lab.toml:10: board "rpi.4_b-1": unknown key "hardware"`},
		{"no boards", "", `lab.toml: board: is required`},
		{"empty boards", "board = []", `lab.toml:1: board: at least one board is required`},
		{"bad sandbox", "sandbox = \"chroot\"\n" + labFile, `lab.toml:1: sandbox: want "namespaces" or "none" (got "chroot")`},
		{"syntax error", "[[board]]\nname = \n", `lab.toml:2: board.name: TOML syntax error: expected value but found '\n' instead`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := lab.Parse("lab.toml", []byte(tt.src))
			require.Error(t, err)
			assert.Nil(t, l)
			var errs jobs.Errors
			require.ErrorAs(t, err, &errs)
			assert.Contains(t, strings.Split(err.Error(), "\n"), tt.want)
		})
	}
}

func TestParseCollectsAllErrors(t *testing.T) {
	src := strings.Replace(labFile, `backend = "sim"`, `backend = "x"`, 1)
	src = strings.Replace(src, `device_type = "rpi4"`, `device_type = 4`, 1)
	_, err := lab.Parse("lab.toml", []byte(src))
	require.Error(t, err)
	assert.Equal(t, "lab.toml:5: board \"sim-0\": backend: backend \"x\" is not supported (supported: sim, hardware, qemu)\n"+
		"lab.toml:9: board \"rpi.4_b-1\": device_type: must be a string (got integer 4)", err.Error())
	var one *jobs.Error
	require.ErrorAs(t, err, &one)
	assert.Equal(t, `board "sim-0": backend`, one.Key)
}

// job builds a job from role specs "name:count:device_type[:tag,tag]".
func job(t *testing.T, roles ...string) *jobs.Job {
	t.Helper()
	var b strings.Builder
	b.WriteString("name = \"j\"\n[[action]]\ntype = \"boot\"\n")
	for _, r := range roles {
		f := strings.Split(r, ":")
		fmt.Fprintf(&b, "[roles.%s]\ncount = %s\ndevice_type = %q\n", f[0], f[1], f[2])
		if len(f) > 3 {
			fmt.Fprintf(&b, "tags = [\"%s\"]\n", strings.Join(strings.Split(f[3], ","), `", "`))
		}
	}
	j, err := jobs.Parse("job.toml", []byte(b.String()))
	require.NoError(t, err)
	return j
}

// boards builds boards from specs "name:device_type[:tag,tag]".
func boards(specs ...string) *lab.Lab {
	l := &lab.Lab{File: "lab.toml"}
	for _, s := range specs {
		f := strings.Split(s, ":")
		b := lab.Board{Name: f[0], DeviceType: f[1], Backend: "sim"}
		if len(f) > 2 {
			b.Tags = strings.Split(f[2], ",")
		}
		l.Boards = append(l.Boards, b)
	}
	return l
}

func TestForJob(t *testing.T) {
	j := job(t, "server:1:sim:usb", "client:2:qemu")
	l := lab.ForJob(j)
	assert.Equal(t, &lab.Lab{File: "built-in", Retries: lab.DefaultRetries, BadAfter: lab.DefaultBadAfter, Boards: []lab.Board{
		{Name: "sim-0", DeviceType: "qemu", Backend: "sim", StandIn: true},
		{Name: "sim-1", DeviceType: "qemu", Backend: "sim", StandIn: true},
		{Name: "sim-2", DeviceType: "sim", Tags: []string{"usb"}, Backend: "sim"},
	}}, l)
	require.NoError(t, l.Check(j))
}

// TestCheckHealth: the lab file's health counts by the one feasibility
// rule: bad and retired boards do not, maintenance and unknown ones do.
func TestCheckHealth(t *testing.T) {
	l := boards("b0:sim", "b1:sim", "b2:sim", "b3:sim")
	l.Boards[0].Health, l.Boards[1].Health, l.Boards[2].Health = "bad", "retired", "maintenance"
	j := job(t, "a:3:sim")
	var ue *lab.UnsatisfiableError
	require.ErrorAs(t, l.Check(j), &ue)
	assert.Equal(t, []string{"role a needs 3 boards of type sim; the lab has 2"}, ue.Lines)
	require.NoError(t, l.Check(job(t, "a:2:sim")))
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		job  []string
		lab  []string
		want []string // nil: satisfiable
	}{
		{"fits", []string{"a:2:sim"}, []string{"b0:sim", "b1:sim:usb"}, nil},
		{"too few", []string{"client:3:rpi4:usb"}, []string{"b0:rpi4:usb", "b1:rpi4", "b2:sim:usb"},
			[]string{"role client needs 3 boards of type rpi4 with tags [usb]; the lab has 1"}},
		{"no tags", []string{"client:2:rpi4"}, []string{"b0:rpi4:usb"},
			[]string{"role client needs 2 boards of type rpi4; the lab has 1"}},
		{"all tags needed", []string{"a:1:sim:usb,wifi"}, []string{"b0:sim:usb", "b1:sim:wifi"},
			[]string{"role a needs 1 boards of type sim with tags [usb wifi]; the lab has 0"}},
		{"one error per role", []string{"a:1:x", "b:1:y", "c:1:sim"}, []string{"b0:sim"},
			[]string{"role a needs 1 boards of type x; the lab has 0", "role b needs 1 boards of type y; the lab has 0"}},
		{"joint", []string{"a:2:sim", "b:2:sim", "c:1:rpi4"}, []string{"b0:sim", "b1:sim", "b2:sim", "r:rpi4"},
			[]string{"roles a, b together need 4 boards (a: 2 of type sim, b: 2 of type sim); the lab has 3 that fit them"}},
		{"joint with tags", []string{"a:1:sim", "b:2:sim:usb"}, []string{"u0:sim:usb", "u1:sim:usb"},
			[]string{"roles a, b together need 3 boards (a: 1 of type sim, b: 2 of type sim with tags [usb]); the lab has 2 that fit them"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := boards(tt.lab...).Check(job(t, tt.job...))
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			var ue *lab.UnsatisfiableError
			require.ErrorAs(t, err, &ue)
			assert.Equal(t, tt.want, ue.Lines)
			assert.Equal(t, "j", ue.Job)
			assert.Contains(t, err.Error(), strings.Join(tt.want, "; "))
		})
	}
}

// TestLabLimits: boot_limit and deploy_limit are unset (zero: the job
// defaults) unless given, and must be positive durations.
func TestLabLimits(t *testing.T) {
	l, err := lab.Parse("lab.toml", []byte("[[board]]\nname = \"a\"\ndevice_type = \"sim\"\n"))
	require.NoError(t, err)
	assert.Zero(t, l.BootLimit)
	assert.Zero(t, l.DeployLimit)
	l, err = lab.Parse("lab.toml", []byte("boot_limit = \"90s\"\ndeploy_limit = \"2m\"\n[[board]]\nname = \"a\"\ndevice_type = \"sim\"\n"))
	require.NoError(t, err)
	assert.Equal(t, 90*time.Second, l.BootLimit)
	assert.Equal(t, 2*time.Minute, l.DeployLimit)
	_, err = lab.Parse("lab.toml", []byte("boot_limit = \"-1s\"\n[[board]]\nname = \"a\"\ndevice_type = \"sim\"\n"))
	assert.ErrorContains(t, err, "lab.toml:1: boot_limit: must be > 0")
}
