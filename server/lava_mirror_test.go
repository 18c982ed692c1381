package server

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lava"
	"github.com/troupe-lab/troupe/report"
)

// TestLAVAMirrorResults: a server configured with a LAVA mirror
// (--lava-mirror) takes a LAVA job whose test definitions come from git at
// an https URL, fetched from the mirror only; the results API serves what
// the test reported with LAVA's helpers: the test set, the reference and
// the attachment's bytes. An unmirrored URL is refused: the server never
// goes to the network.
func TestLAVAMirrorResults(t *testing.T) {
	mirror := t.TempDir()
	repo := filepath.Join(mirror, "qa", "defs.git")
	require.NoError(t, os.MkdirAll(repo, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(repo, "smoke.yaml"), []byte(`metadata: {name: smoke}
run:
  steps:
  - lava-test-set start basics
  - lava-test-case ok --result pass
  - lava-test-reference docs --result pass --reference https://docs.example.org/smoke
  - lava-test-set stop
  - printf 'attached bytes\n' > out.txt
  - lava-test-case-attach ok out.txt text/plain
`), 0o644))
	for _, args := range [][]string{{"init", "--quiet"}, {"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "x"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	x := startConfig(t, Config{Lab: simLab(t, 1, 0), Data: t.TempDir(),
		LAVAMirrors: []lava.Mirror{{Prefix: "https://git.example.org/", Dir: mirror}}})
	job := func(url string) string {
		return "job_name: mirrored\ndevice_type: sim\ntimeouts: {job: {minutes: 2}}\nactions:\n- boot: {method: qemu}\n- test:\n    definitions:\n" +
			"    - {from: git, name: smoke, repository: '" + url + "', path: smoke.yaml}\n"
	}
	code, body := call(t, "POST", x.url+"/api/v1/jobs?format=lava", "", "", job("https://git.example.org/qa/defs.git"))
	require.Equal(t, http.StatusCreated, code, body)
	var created struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(body), &created))
	j := x.await(t, created.ID, time.Minute, "complete", "incomplete")
	require.Equal(t, "complete", j.Status, j.Error)
	byName := map[string]report.Test{}
	for _, c := range j.Tests {
		byName[c.Suite+"/"+c.Name] = c
	}
	assert.Equal(t, "basics", byName["smoke/ok"].Set)
	assert.Equal(t, "basics", byName["smoke/docs"].Set)
	assert.Equal(t, "https://docs.example.org/smoke", byName["smoke/docs"].Reference)
	if att := byName["smoke/ok"].Attachments; assert.Len(t, att, 1) {
		assert.Equal(t, "attached bytes\n", string(att[0].Data))
		assert.Equal(t, "out.txt", att[0].Name)
	}

	code, body = call(t, "POST", x.url+"/api/v1/jobs?format=lava", "", "", job("https://git.elsewhere.org/qa/defs.git"))
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, body, "map it to a local mirror")
}
