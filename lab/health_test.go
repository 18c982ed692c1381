package lab_test

import (
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

// healthJob is a valid health check job for device type dt.
func healthJob(dt string) string {
	return "name = \"health-" + dt + "\"\n[roles.dut]\ndevice_type = \"" + dt + "\"\n[[action]]\ntype = \"boot\"\n"
}

const healthLab = `retries = 2
bad_after = 5

[[board]]
name = "sim-0"
device_type = "sim"

[[board]]
name = "rpi-0"
device_type = "rpi4"

[[health_check]]
device_type = "sim"
job = "health/sim.toml"
every = 10
interval = "24h"

[[health_check]]
device_type = "rpi4"
job = "health/rpi4.toml"
`

// healthDir returns a directory holding health/sim.toml, health/rpi4.toml
// and the extra job files in files (path relative to the directory ->
// content), and the path of its lab.toml (not created).
func healthDir(t *testing.T, files map[string]string) (dir, labPath string) {
	t.Helper()
	dir = t.TempDir()
	all := map[string]string{"health/sim.toml": healthJob("sim"), "health/rpi4.toml": healthJob("rpi4")}
	for p, c := range files {
		all[p] = c
	}
	for p, c := range all {
		p = filepath.Join(dir, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
		require.NoError(t, os.WriteFile(p, []byte(c), 0o600))
	}
	return dir, filepath.Join(dir, "lab.toml")
}

func TestParseHealthChecks(t *testing.T) {
	dir, path := healthDir(t, nil)
	require.NoError(t, os.WriteFile(path, []byte(healthLab), 0o600))
	l, err := lab.Load(path)
	require.NoError(t, err)

	simJob, err := jobs.Load(filepath.Join(dir, "health/sim.toml"))
	require.NoError(t, err)
	rpiJob, err := jobs.Load(filepath.Join(dir, "health/rpi4.toml"))
	require.NoError(t, err)
	assert.Equal(t, &lab.Lab{
		File: path,
		Boards: []lab.Board{
			{Name: "sim-0", DeviceType: "sim", Backend: "sim", Line: 4},
			{Name: "rpi-0", DeviceType: "rpi4", Backend: "sim", Line: 8},
		},
		Retries:  2,
		BadAfter: 5,
		HealthChecks: []lab.HealthCheck{
			{DeviceType: "sim", Job: simJob, Every: 10, Interval: 24 * time.Hour, Line: 12},
			{DeviceType: "rpi4", Job: rpiJob, Line: 18},
		},
	}, l)
	assert.Equal(t, filepath.Join(dir, "health", "sim.toml"), l.HealthChecks[0].Job.File)

	hc, ok := l.HealthCheck("rpi4")
	require.True(t, ok)
	assert.Equal(t, l.HealthChecks[1], hc)
	_, ok = l.HealthCheck("qemu")
	assert.False(t, ok)

	// Absolute job paths are kept.
	abs := strings.Replace(healthLab, `"health/sim.toml"`, `"`+filepath.Join(dir, "health/sim.toml")+`"`, 1)
	l, err = lab.Parse(filepath.Join(t.TempDir(), "lab.toml"), []byte(abs))
	require.Error(t, err, "the relative rpi4 job is not next to this lab file")
	assert.Nil(t, l)
	assert.NotContains(t, err.Error(), "health_check[0]")
}

func TestParseDefaults(t *testing.T) {
	l, err := lab.Parse("lab.toml", []byte(labFile))
	require.NoError(t, err)
	assert.Equal(t, lab.DefaultRetries, l.Retries)
	assert.Equal(t, lab.DefaultBadAfter, l.BadAfter)
	assert.Equal(t, 1, lab.DefaultRetries)
	assert.Equal(t, 3, lab.DefaultBadAfter)
	assert.Nil(t, l.HealthChecks)
	_, ok := l.HealthCheck("sim")
	assert.False(t, ok)

	l, err = lab.Parse("lab.toml", []byte("retries = 0\nbad_after = 1\nhealth_check = []\n"+labFile))
	require.NoError(t, err)
	assert.Equal(t, 0, l.Retries)
	assert.Equal(t, 1, l.BadAfter)
	assert.Empty(t, l.HealthChecks)

	dir, path := healthDir(t, nil)
	l, err = lab.Parse(path, []byte("[[board]]\nname = \"b\"\ndevice_type = \"sim\"\n[[health_check]]\ndevice_type = \"sim\"\njob = \"health/sim.toml\"\n"))
	require.NoError(t, err)
	require.Len(t, l.HealthChecks, 1)
	hc := l.HealthChecks[0]
	assert.Equal(t, 0, hc.Every)
	assert.Equal(t, time.Duration(0), hc.Interval)
	assert.Equal(t, 4, hc.Line)
	assert.Equal(t, filepath.Join(dir, "health", "sim.toml"), hc.Job.File)
}

func TestParseHealthCheckErrors(t *testing.T) {
	dir, path := healthDir(t, map[string]string{
		"two-roles.toml":  healthJob("sim") + "[roles.aux]\ndevice_type = \"sim\"\n",
		"count-2.toml":    strings.Replace(healthJob("sim"), "[roles.dut]\n", "[roles.dut]\ncount = 2\n", 1),
		"rpi4-only.toml":  healthJob("rpi4"),
		"broken.toml":     healthJob("sim") + "bogus = 1\n",
		"sub/nested.toml": healthJob("sim"),
	})
	fifo := filepath.Join(dir, "fifo.toml")
	require.NoError(t, os.Mkdir(fifo, 0o700)) // a directory: not a regular file
	file := func(p string) string { return filepath.Join(dir, p) }
	tests := []struct{ name, old, new, want string }{
		{"negative retries", "retries = 2", "retries = -1",
			path + `:1: retries: must be >= 0 (got -1)`},
		{"bad_after 0", "bad_after = 5", "bad_after = 0",
			path + `:2: bad_after: must be >= 1 (got 0)`},
		{"retries wrong type", "retries = 2", `retries = "2"`,
			path + `:1: retries: must be an integer (got string "2")`},
		{"missing job file", `"health/rpi4.toml"`, `"health/none.toml"`,
			path + `:20: health_check[1].job: invalid health check job: load job: open ` + file("health/none.toml") + `: no such file or directory`},
		{"not a regular file", `"health/rpi4.toml"`, `"fifo.toml"`,
			path + `:20: health_check[1].job: health check job ` + fifo + ` is not a regular file`},
		{"invalid job", `"health/sim.toml"`, `"broken.toml"`,
			path + `:14: health_check[0].job: invalid health check job: ` + file("broken.toml") + `:6: action[0]: unknown key "bogus"`},
		{"two roles", `"health/sim.toml"`, `"two-roles.toml"`,
			path + `:14: health_check[0].job: health check job ` + file("two-roles.toml") + ` must have exactly one role (it has 2: aux, dut)`},
		{"count 2", `"health/sim.toml"`, `"count-2.toml"`,
			path + `:14: health_check[0].job: role dut of health check job ` + file("count-2.toml") + ` must have count = 1 (got 2)`},
		{"wrong device type", `"health/sim.toml"`, `"rpi4-only.toml"`,
			path + `:14: health_check[0].job: role dut of health check job ` + file("rpi4-only.toml") + ` has device_type "rpi4"; the health check is for "sim"`},
		{"duplicate device type", `device_type = "rpi4"` + "\njob", `device_type = "sim"` + "\njob",
			path + `:19: health_check[1].device_type: duplicate health check for device type "sim" (also used by health_check[0])`},
		{"no board of the type", `device_type = "rpi4"` + "\njob", `device_type = "rpi5"` + "\njob",
			path + `:19: health_check[1].device_type: no board has device type "rpi5"`},
		{"empty device type", `device_type = "rpi4"` + "\njob", `device_type = ""` + "\njob",
			path + `:19: health_check[1].device_type: must not be empty`},
		{"unknown key", `interval = "24h"`, `interval = "24h"` + "\ntimeout = \"5m\"",
			path + `:17: health_check[0]: unknown key "timeout"`},
		{"bad interval", `interval = "24h"`, `interval = "daily"`,
			path + `:16: health_check[0].interval: invalid duration "daily"`},
		{"zero interval", `interval = "24h"`, `interval = "0s"`,
			path + `:16: health_check[0].interval: must be > 0 (got "0s")`},
		{"negative every", `every = 10`, `every = -1`,
			path + `:15: health_check[0].every: must be >= 0 (got -1)`},
		{"missing job", "job = \"health/rpi4.toml\"\n", "",
			path + `:18: health_check[1].job: is required`},
		{"missing device type", `device_type = "rpi4"` + "\njob", "job",
			path + `:18: health_check[1].device_type: is required`},
		{"empty job", `"health/rpi4.toml"`, `""`,
			path + `:20: health_check[1].job: must not be empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(healthLab, tt.old, tt.new, 1)
			require.NotEqual(t, healthLab, src, "replacement did not apply")
			l, err := lab.Parse(path, []byte(src))
			require.Error(t, err)
			assert.Nil(t, l)
			var errs jobs.Errors
			require.ErrorAs(t, err, &errs)
			assert.Contains(t, strings.Split(err.Error(), "\n"), tt.want)
		})
	}

	_, err := lab.Parse(path, []byte("health_check = 1\n"+labFile))
	require.Error(t, err)
	assert.Contains(t, err.Error(), path+`:1: health_check: must be an array of tables (got integer 1)`)

	// A job relative to a subdirectory of the lab file's directory.
	_, err = lab.Parse(path, []byte(strings.Replace(healthLab, `"health/sim.toml"`, `"sub/nested.toml"`, 1)))
	require.NoError(t, err)
}

func TestParseHealthCheckCollectsAllErrors(t *testing.T) {
	_, path := healthDir(t, nil)
	src := strings.Replace(healthLab, "retries = 2", "retries = -3", 1)
	src = strings.Replace(src, `every = 10`, `every = -1`, 1)
	src = strings.Replace(src, `device_type = "rpi4"`+"\njob", `device_type = "sim"`+"\njob", 1)
	_, err := lab.Parse(path, []byte(src))
	require.Error(t, err)
	assert.Equal(t, path+":1: retries: must be >= 0 (got -3)\n"+
		path+":15: health_check[0].every: must be >= 0 (got -1)\n"+
		path+":19: health_check[1].device_type: duplicate health check for device type \"sim\" (also used by health_check[0])\n"+
		path+":20: health_check[1].job: role dut of health check job "+filepath.Join(filepath.Dir(path), "health/rpi4.toml")+" has device_type \"rpi4\"; the health check is for \"sim\"",
		err.Error())
}

func TestBoardHealth(t *testing.T) {
	l, err := lab.Parse("lab.toml", []byte("[[board]]\nname = \"a\"\ndevice_type = \"sim\"\nhealth = \"maintenance\"\n[[board]]\nname = \"b\"\ndevice_type = \"sim\"\n"))
	require.NoError(t, err)
	assert.Equal(t, "maintenance", l.Boards[0].Health)
	assert.Equal(t, "", l.Boards[1].Health)
	_, err = lab.Parse("lab.toml", []byte("[[board]]\nname = \"a\"\ndevice_type = \"sim\"\nhealth = \"sick\"\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `lab.toml:4: board "a": health: must be one of unknown, good, bad, maintenance, retired (got "sick")`)
}
