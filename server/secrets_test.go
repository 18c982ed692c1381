package server

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/store"
)

// secretLAVAJob is a one-node LAVA job whose secret names a test case.
const secretLAVAJob = `job_name: lava secret
device_type: sim
timeouts:
  job: {minutes: 2}
secrets:
  API_KEY: "lava-secret-Kx81"
actions:
- boot:
    method: qemu
    prompts: ['root@debian:~#']
- test:
    definitions:
    - repository:
        metadata: {format: Lava-Test Test Definition 1.0, name: s}
        run:
          steps:
          - lava-test-case "key-$API_KEY" --result pass
      from: inline
      name: s
      path: inline/s.yaml
`

// secretTOMLJob is a troupe job whose secret names a test case and is
// also the units of its measurement.
func secretTOMLJob() string {
	return testJob("toml-secret", `lava-test-case "case-$TOKEN" --result pass --measurement 1 --units "$TOKEN"`) +
		"[secrets]\nTOKEN = \"toml-secret-Qz7\"\n"
}

// requireSourceMasked checks that the source of job id, as x serves it,
// shows [secret] for secret and keeps the rest of the text.
func requireSourceMasked(t *testing.T, x *testServer, id, secret, kept string) {
	t.Helper()
	code, body := call(t, "GET", x.url+"/api/v1/jobs/"+id+"/source", "", "", "")
	require.Equal(t, http.StatusOK, code, body)
	require.NotContains(t, body, secret)
	require.Contains(t, body, "[secret]")
	require.Contains(t, body, kept)
}

func TestSourceAndResultsMaskSecrets(t *testing.T) {
	data := t.TempDir()
	x := start(t, data, simLab(t, 1, 1), nil)
	code, body := call(t, "POST", x.url+"/api/v1/jobs", "", "application/yaml", secretLAVAJob)
	require.Equal(t, http.StatusCreated, code, body)
	lavaID := strings.Split(strings.Split(body, `"id":"`)[1], `"`)[0]
	tomlID := x.submit(t, "", secretTOMLJob())

	requireSourceMasked(t, x, lavaID, "lava-secret-Kx81", "API_KEY: \"[secret]\"")
	requireSourceMasked(t, x, tomlID, "toml-secret-Qz7", "TOKEN = \"[secret]\"")
	requireSourceMasked(t, x, lavaID, "lava-secret-Kx81", "job_name: lava secret") // cached: the same again

	for id, c := range map[string]struct{ secret, test string }{
		lavaID: {"lava-secret-Kx81", "key-[secret]"},
		tomlID: {"toml-secret-Qz7", "case-[secret]"},
	} {
		j := x.await(t, id, 2*time.Minute, "complete", "incomplete")
		require.Equal(t, "complete", j.Status, j.Error)
		var names []string
		for _, tc := range j.Tests {
			names = append(names, tc.Name)
			require.NotContains(t, tc.Name+tc.Units, c.secret)
		}
		require.Contains(t, names, c.test, "the job API")
		res, err := os.ReadFile(filepath.Join(data, "jobs", id, "results.json"))
		require.NoError(t, err)
		require.NotContains(t, string(res), c.secret)
		require.Contains(t, string(res), c.test, "results.json")
		code, junit := call(t, "GET", x.url+"/api/v1/jobs/"+id+"/junit.xml", "", "", "")
		require.Equal(t, http.StatusOK, code, junit)
		require.NotContains(t, junit, c.secret)
		require.Contains(t, junit, c.test, "junit.xml")
	}
	units := map[string]string{}
	for _, tc := range x.job(t, tomlID).Tests {
		units[tc.Name] = tc.Units
	}
	require.Equal(t, "[secret]", units["case-[secret]"], "a measurement's units: %v", units)
	x.stop()

	// A restarted server reads the jobs from its store: still masked.
	y := start(t, data, simLab(t, 1, 1), nil)
	requireSourceMasked(t, y, lavaID, "lava-secret-Kx81", "API_KEY: \"[secret]\"")
	requireSourceMasked(t, y, tomlID, "toml-secret-Qz7", "TOKEN = \"[secret]\"")
}

// TestSubmitRefusesSecretsNotWrittenAsTheyAre: a secret spelled with
// escapes or folded over lines could not be masked in the source shown;
// the job is refused without quoting it, and nothing is queued.
func TestSubmitRefusesSecretsNotWrittenAsTheyAre(t *testing.T) {
	x := start(t, t.TempDir(), simLab(t, 1, 1), nil)
	for name, c := range map[string]struct{ ctype, src string }{
		"toml escape": {"", testJob("esc", "true") + "[secrets]\nTOKEN = \"t\\u0077o-secret\"\n"},
		"lava escape": {"application/yaml", strings.Replace(secretLAVAJob, `"lava-secret-Kx81"`, `"lava\x2Dsecret"`, 1)},
		"lava folded": {"application/yaml", strings.Replace(secretLAVAJob, `"lava-secret-Kx81"`, ">\n    folded\n    secret", 1)},
	} {
		code, body := call(t, "POST", x.url+"/api/v1/jobs", "", c.ctype, c.src)
		require.Equal(t, http.StatusBadRequest, code, "%s: %s", name, body)
		require.Contains(t, body, "must be written as it is", name)
		for _, s := range []string{"two-secret", "u0077o", "lava-secret", "x2Dsecret", "folded"} {
			require.NotContains(t, body, s, name)
		}
	}
	code, body := call(t, "GET", x.url+"/api/v1/jobs", "", "", "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `[]`, body, "nothing was queued")
}

// BenchmarkShownSource: the first read of a job's source reads its
// secrets and masks them; the reads after it are the cached text.
func BenchmarkShownSource(b *testing.B) {
	src := secretLAVAJob + strings.Repeat("# a comment line of the job file, kept as it is\n", 2000)
	b.Run("first", func(b *testing.B) {
		for b.Loop() {
			lj := &liveJob{rec: &store.Job{ID: "1", Format: "lava", File: "job.yaml", Source: src}}
			if _, err := lj.shownSource(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		lj := &liveJob{rec: &store.Job{ID: "1", Format: "lava", File: "job.yaml", Source: src}}
		if _, err := lj.shownSource(); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := lj.shownSource(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
