package server

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lava"
)

func TestHealthz(t *testing.T) {
	x := start(t, t.TempDir(), simLab(t, 1, 1), nil)
	code, body := call(t, "GET", x.url+"/api/v1/healthz", "", "", "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"ok": true}`, body)
	code, body = call(t, "GET", x.url+"/api/v1/nope", "", "", "")
	require.Equal(t, http.StatusNotFound, code)
	require.Contains(t, body, "no such API")
}

func TestSubmitRunsTheJobAndServesItsResults(t *testing.T) {
	x := start(t, t.TempDir(), simLab(t, 2, 1), nil)
	id := x.submit(t, "", testJob("quick", `echo hello-from-$TROUPE_NODE
troupe-test-case greet --shell true`))
	j := x.await(t, id, time.Minute, "complete", "incomplete")
	require.Equal(t, "complete", j.Status, j.Error)
	require.Equal(t, "quick", j.Name)
	require.Equal(t, map[string]int{"node": 1}, j.Roles)
	require.NotNil(t, j.Started)
	require.NotNil(t, j.Ended)
	require.Len(t, j.Nodes, 1)
	require.Equal(t, "node-0", j.Nodes[0].Name)
	require.Contains(t, []string{"sim-0", "sim-1"}, j.Nodes[0].Board)
	var found bool
	for _, tc := range j.Tests {
		found = found || (tc.Name == "greet" && tc.Result == "pass")
	}
	require.True(t, found, "test case greet passed: %+v", j.Tests)

	code, logs := call(t, "GET", x.url+"/api/v1/jobs/"+id+"/logs", "", "", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, logs, " node-0 hello-from-node-0")
	code, raw := call(t, "GET", x.url+"/api/v1/jobs/"+id+"/logs?node=node-0", "", "", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, raw, "hello-from-node-0")
	code, body := call(t, "GET", x.url+"/api/v1/jobs/"+id+"/logs?node=../troupe.db", "", "", "")
	require.Equal(t, http.StatusBadRequest, code, body)

	code, junit := call(t, "GET", x.url+"/api/v1/jobs/"+id+"/junit.xml", "", "", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, junit, `<testcase`)
	require.Contains(t, junit, `greet`)

	code, src := call(t, "GET", x.url+"/api/v1/jobs/"+id+"/source", "", "", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, src, `name = "quick"`)

	var list []Summary
	code, body = call(t, "GET", x.url+"/api/v1/jobs?status=complete", "", "", "")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Len(t, list, 1)
	require.Equal(t, id, list[0].ID)
	code, body = call(t, "GET", x.url+"/api/v1/jobs?status=queued,running", "", "", "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `[]`, body)
	code, body = call(t, "GET", x.url+"/api/v1/jobs?status=bogus", "", "", "")
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, `status \"bogus\"`)

	code, body = call(t, "GET", x.url+"/api/v1/jobs/"+id+"/explain", "", "", "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"waiting": false, "status": "complete"}`, body)
	code, _ = call(t, "POST", x.url+"/api/v1/jobs/"+id+"/cancel", "", "", "")
	require.Equal(t, http.StatusConflict, code, "an ended job cannot be canceled")

	for _, path := range []string{"/api/v1/jobs/99", "/api/v1/jobs/99/logs", "/api/v1/jobs/x/junit.xml", "/api/v1/jobs/99/explain"} {
		code, _ = call(t, "GET", x.url+path, "", "", "")
		require.Equal(t, http.StatusNotFound, code, path)
	}
}

func TestSubmitRejectsBadJobsWithTheValidateMessage(t *testing.T) {
	x := start(t, t.TempDir(), simLab(t, 2, 1), nil)
	bad := "name = \"x\"\nbogus = 1\n[roles.a]\ndevice_type = \"sim\"\n"
	_, want := jobs.Parse("mine.toml", []byte(bad))
	require.Error(t, want)
	code, body := call(t, "POST", x.url+"/api/v1/jobs?file=mine.toml", "", "", bad)
	require.Equal(t, http.StatusBadRequest, code)
	var e struct{ Error string }
	require.NoError(t, json.Unmarshal([]byte(body), &e))
	require.Equal(t, want.Error(), e.Error, "the same text as troupe validate")
	require.Contains(t, e.Error, "mine.toml:2")

	cases := map[string]struct {
		query, ctype, body, want string
		code                     int
	}{
		"not toml":     {"", "", "name = ", "job.toml", 400},
		"empty":        {"", "", "", "name", 400},
		"too big":      {"", "", strings.Repeat("#", MaxJobSize+1), "larger than", 413},
		"bad format":   {"?format=json", "", testJob("a", "true"), "want toml or lava", 400},
		"too many":     {"", "", strings.Replace(testJob("a", "true"), "count = 1", "count = 9", 1), "9", 400},
		"no such type": {"", "", strings.Replace(testJob("a", "true"), `device_type = "sim"`, `device_type = "rpi9"`, 1), "rpi9", 400},
		"no image":     {"", "", strings.Replace(testJob("a", "true"), "[[action]]\ntype = \"boot\"", "[[action]]\ntype = \"deploy\"\nimage = \"/nonexistent/rootfs.tar\"\n[[action]]\ntype = \"boot\"", 1), "must be a path inside the images root", 400},
		"no kernel":    {"", "", strings.Replace(testJob("a", "true"), "[[action]]\ntype = \"boot\"", "[[action]]\ntype = \"deploy\"\nimages = {kernel = \"/nonexistent/bzImage\"}\n[[action]]\ntype = \"boot\"", 1), "/nonexistent/bzImage", 400},
		"yaml as lava": {"", "application/yaml", "job_name: [", "job.yaml", 400},
	}
	for name, c := range cases {
		code, body := call(t, "POST", x.url+"/api/v1/jobs"+c.query, "", c.ctype, c.body)
		require.Equal(t, c.code, code, "%s: %s", name, body)
		require.Contains(t, body, c.want, name)
	}
	code, body = call(t, "GET", x.url+"/api/v1/jobs", "", "", "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `[]`, body, "nothing was queued")
}

func TestSubmitLAVAJob(t *testing.T) {
	x := start(t, t.TempDir(), simLab(t, 3, 1), nil)
	data, err := os.ReadFile("../examples/lava-multinode.yaml")
	require.NoError(t, err)
	// The example targets qemu devices; this lab has sim boards.
	src := strings.ReplaceAll(string(data), "device_type: qemu", "device_type: sim")
	_, err = lava.Import("x.yaml", []byte(src))
	require.NoError(t, err)
	code, body := call(t, "POST", x.url+"/api/v1/jobs", "", "application/yaml", src)
	require.Equal(t, http.StatusCreated, code, body)
	var r struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(body), &r))
	j := x.await(t, r.ID, 2*time.Minute, "complete", "incomplete")
	require.Equal(t, "complete", j.Status, j.Error)
	require.Len(t, j.Nodes, 3)
}

func TestCancelQueuedAndRunningJobs(t *testing.T) {
	x := start(t, t.TempDir(), simLab(t, 1, 1), nil)
	a := x.submit(t, "", testJob("long", "sleep 60"))
	x.await(t, a, 30*time.Second, "running")
	b := x.submit(t, "", testJob("behind", "true"))

	// b waits for the board a holds, and says so.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := call(t, "GET", x.url+"/api/v1/jobs/"+b+"/explain", "", "", "")
		require.Equal(t, http.StatusOK, code)
		var e struct {
			Waiting  bool   `json:"waiting"`
			Position int    `json:"position"`
			Summary  string `json:"summary"`
			Roles    []struct {
				Busy map[string][]string `json:"busy"`
			} `json:"roles"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &e))
		if e.Position == 1 {
			require.True(t, e.Waiting)
			require.Len(t, e.Roles, 1)
			require.Equal(t, []string{"sim-0"}, e.Roles[0].Busy[a], body)
			require.Contains(t, e.Summary, a)
			break
		}
		require.True(t, time.Now().Before(deadline), "no explanation: %s", body)
		time.Sleep(50 * time.Millisecond)
	}
	code, body := call(t, "GET", x.url+"/api/v1/devices", "", "", "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"job":"`+a+`"`)

	code, body = call(t, "POST", x.url+"/api/v1/jobs/"+b+"/cancel", "", "", "")
	require.Equal(t, http.StatusAccepted, code, body)
	jb := x.await(t, b, 10*time.Second, "canceled")
	require.Contains(t, jb.Error, "canceled by local")
	require.Nil(t, jb.Started)

	code, body = call(t, "POST", x.url+"/api/v1/jobs/"+a+"/cancel", "", "", "")
	require.Equal(t, http.StatusAccepted, code, body)
	ja := x.await(t, a, 20*time.Second, "canceled")
	require.NotNil(t, ja.Ended)
	code, _ = call(t, "POST", x.url+"/api/v1/jobs/"+a+"/cancel", "", "", "")
	require.Equal(t, http.StatusConflict, code)
	code, _ = call(t, "POST", x.url+"/api/v1/jobs/77/cancel", "", "", "")
	require.Equal(t, http.StatusNotFound, code)
}

func TestDeviceHealthIsSetByHandAndSurvivesRestart(t *testing.T) {
	data := t.TempDir()
	x := start(t, data, simLab(t, 2, 1), nil)
	code, body := call(t, "GET", x.url+"/api/v1/devices", "", "", "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `[{"name":"sim-0","device_type":"sim","tags":[],"backend":"sim","health":"good","job":""},
		{"name":"sim-1","device_type":"sim","tags":[],"backend":"sim","health":"good","job":""}]`, body)

	code, body = call(t, "PUT", x.url+"/api/v1/devices/sim-1/health", "", "", `{"health": "maintenance"}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"health":"maintenance"`)
	for _, c := range []struct {
		path, body string
		code       int
	}{
		{"sim-1", `{"health": "broken"}`, 400},
		{"sim-1", `{"health": "good", "extra": 1}`, 400},
		{"sim-1", `not json`, 400},
		{"sim-9", `{"health": "good"}`, 404},
	} {
		code, body := call(t, "PUT", x.url+"/api/v1/devices/"+c.path+"/health", "", "", c.body)
		require.Equal(t, c.code, code, "%s %s: %s", c.path, c.body, body)
	}

	// Only sim-0 is in service: a 2-node job waits, saying why.
	id := x.submit(t, "", strings.Replace(testJob("pair", "true"), "count = 1", "count = 2", 1))
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := call(t, "GET", x.url+"/api/v1/jobs/"+id+"/explain", "", "", "")
		if strings.Contains(body, `"maintenance":1`) {
			break
		}
		require.True(t, time.Now().Before(deadline), body)
		time.Sleep(50 * time.Millisecond)
	}
	x.stop()

	y := start(t, data, simLab(t, 2, 1), nil)
	_, body = call(t, "GET", y.url+"/api/v1/devices", "", "", "")
	require.Contains(t, body, `"name":"sim-1","device_type":"sim","tags":[],"backend":"sim","health":"maintenance"`)
	require.Equal(t, "queued", y.job(t, id).Status, "still waiting after the restart")
	code, body = call(t, "PUT", y.url+"/api/v1/devices/sim-1/health", "", "", `{"health": "good"}`)
	require.Equal(t, http.StatusOK, code, body)
	j := y.await(t, id, time.Minute, "complete", "incomplete")
	require.Equal(t, "complete", j.Status, j.Error)
}

func TestRestartRequeuesWhatWasRunning(t *testing.T) {
	data := t.TempDir()
	x := start(t, data, simLab(t, 1, 1), nil)
	done := x.submit(t, "", testJob("before", "echo finished-before"))
	x.await(t, done, time.Minute, "complete")
	// Each attempt waits for a gate the test opens in the board's HOME (its
	// sandbox's /root: a new attempt starts with an empty one) once the
	// attempt runs; only the second attempt's gate is opened. The first
	// attempt's mark must not be seen by the second.
	a := x.submit(t, "", testJob("long", `if [ -e "$HOME/ran" ]; then echo leftover-seen; fi; touch "$HOME/ran"; echo attempt-started; `+
		`while [ ! -e "$HOME/go" ]; do sleep 0.05; done; echo attempt-done`))
	x.awaitLog(t, a, "attempt-started", 30*time.Second)
	b := x.submit(t, "", testJob("queued", "true"))
	x.stop() // like SIGTERM: the running job stops, its boards off

	y := start(t, data, simLab(t, 1, 1), nil)
	// The first attempt's logs were moved aside at start: this is the second.
	y.awaitLog(t, a, "attempt-started", time.Minute)
	y.openGate(t, "go")
	ja := y.await(t, a, time.Minute, "complete", "incomplete")
	require.Equal(t, "complete", ja.Status, ja.Error)
	require.Len(t, ja.Attempts, 1)
	require.Equal(t, stoppedDuringRun, ja.Attempts[0].Error)
	require.Equal(t, []string{"sim-0"}, ja.Attempts[0].Boards)
	jb := y.await(t, b, time.Minute, "complete", "incomplete")
	require.Equal(t, "complete", jb.Status, jb.Error)

	// The first attempt's log is kept beside the second's.
	first, err := os.ReadFile(filepath.Join(data, "jobs", a, "logs-attempt-1", "group.log"))
	require.NoError(t, err)
	require.Contains(t, string(first), "attempt-started")
	require.NotContains(t, string(first), "attempt-done")
	_, logs := call(t, "GET", y.url+"/api/v1/jobs/"+a+"/logs", "", "", "")
	require.Contains(t, logs, "attempt-done")
	require.NotContains(t, logs, "leftover-seen", "the second attempt saw the first's files")
	// A job that ended before the restart is still served.
	_, logs = call(t, "GET", y.url+"/api/v1/jobs/"+done+"/logs", "", "", "")
	require.Contains(t, logs, "finished-before")
	require.Equal(t, "complete", y.job(t, done).Status)
}

func TestRestartWithoutRetriesLeftEndsTheJob(t *testing.T) {
	data := t.TempDir()
	x := start(t, data, simLab(t, 1, 0), nil)
	a := x.submit(t, "", testJob("long", "sleep 60"))
	x.await(t, a, 30*time.Second, "running")
	x.stop()
	y := start(t, data, simLab(t, 1, 0), nil)
	j := y.job(t, a)
	require.Equal(t, "incomplete", j.Status)
	require.Equal(t, stoppedDuringRun, j.Error)
	code, _ := call(t, "GET", y.url+"/api/v1/jobs/"+a+"/junit.xml", "", "", "")
	require.Equal(t, http.StatusOK, code)
}

func TestAuth(t *testing.T) {
	tokens := []Token{
		{Name: "watcher", Secret: "viewer-secret-0123456789", Role: Viewer},
		{Name: "ci", Secret: "submitter-secret-0123456789", Role: Submitter},
		{Name: "boss", Secret: "admin-secret-0123456789", Role: Admin},
	}
	x := start(t, t.TempDir(), simLab(t, 1, 1), tokens)
	job := testJob("a", "true")
	for _, c := range []struct {
		method, path, token, body string
		code                      int
	}{
		{"GET", "/api/v1/jobs", "", "", 401},
		{"GET", "/api/v1/jobs", "wrong-secret-0123456789", "", 401},
		{"GET", "/api/v1/jobs", tokens[0].Secret + "x", "", 401},
		{"POST", "/api/v1/jobs", "", job, 401},
		{"POST", "/api/v1/jobs", tokens[0].Secret, job, 403},
		{"GET", "/api/v1/devices", tokens[0].Secret, "", 200},
		{"PUT", "/api/v1/devices/sim-0/health", tokens[1].Secret, `{"health":"bad"}`, 403},
		{"PUT", "/api/v1/devices/sim-0/health", "", `{"health":"bad"}`, 401},
	} {
		code, body := call(t, c.method, x.url+c.path, c.token, "", c.body)
		require.Equal(t, c.code, code, "%s %s with %q: %s", c.method, c.path, c.token, body)
	}
	// Nothing changed.
	_, body := call(t, "GET", x.url+"/api/v1/jobs", tokens[0].Secret, "", "")
	require.JSONEq(t, `[]`, body)
	_, body = call(t, "GET", x.url+"/api/v1/devices", tokens[0].Secret, "", "")
	require.Contains(t, body, `"health":"good"`)

	id := x.submit(t, tokens[1].Secret, job)
	require.Equal(t, "ci", x.jobAs(t, id, tokens[0].Secret).Submitter)
	code, body := call(t, "PUT", x.url+"/api/v1/devices/sim-0/health", tokens[2].Secret, "", `{"health":"good"}`)
	require.Equal(t, 200, code, body)
	code, _ = call(t, "GET", x.url+"/api/v1/healthz", "", "", "")
	require.Equal(t, 200, code, "health checks need no token")
}

// awaitLog waits until job id's merged log has text.
func (x *testServer) awaitLog(t *testing.T, id, text string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_, logs := call(t, "GET", x.url+"/api/v1/jobs/"+id+"/logs", "", "", "")
		if strings.Contains(logs, " "+text) {
			return
		}
		require.True(t, time.Now().Before(deadline), "job %s never logged %q", id, text)
		time.Sleep(20 * time.Millisecond)
	}
}

func (x *testServer) jobAs(t *testing.T, id, token string) Job {
	code, body := call(t, "GET", x.url+"/api/v1/jobs/"+id, token, "", "")
	require.Equal(t, http.StatusOK, code, body)
	var j Job
	require.NoError(t, json.Unmarshal([]byte(body), &j))
	return j
}

func TestParseTokens(t *testing.T) {
	ts, err := ParseTokens("t.toml", []byte("[[token]]\nname = \"ci\"\nsecret = \"0123456789abcdef\"\nrole = \"submitter\"\n"))
	require.NoError(t, err)
	require.Equal(t, []Token{{Name: "ci", Secret: "0123456789abcdef", Role: Submitter}}, ts)
	for src, want := range map[string]string{
		"": "token",
		"[[token]]\nname = \"a\"\nsecret = \"short\"\nrole = \"admin\"\n":                                                                                      "t.toml:3",
		"[[token]]\nname = \"a\"\nsecret = \"0123456789abcdef\"\nrole = \"root\"\n":                                                                            "role",
		"[[token]]\nname = \"a\"\nsecret = \"0123456789abcdef\"\nrole = \"admin\"\ncolor = 1\n":                                                                "color",
		"[[token]]\nname = \"a\"\nsecret = \"0123456789abcdef\"\nrole = \"admin\"\n[[token]]\nname = \"a\"\nsecret = \"0123456789abcdeg\"\nrole = \"admin\"\n": "used by another token",
	} {
		_, err := ParseTokens("t.toml", []byte(src))
		require.ErrorContains(t, err, want, src)
		require.NotContains(t, err.Error(), "0123456789abcde", "secrets are never in messages")
	}
}

func FuzzSubmission(f *testing.F) {
	for _, p := range []string{"../examples/hello-multinode.toml", "../examples/relay.toml"} {
		data, err := os.ReadFile(p)
		require.NoError(f, err)
		f.Add(string(data), "toml")
	}
	lavaJob, err := os.ReadFile("../examples/lava-multinode.yaml")
	require.NoError(f, err)
	f.Add(string(lavaJob), "lava")
	f.Add(testJob("a", "true"), "toml")
	l := simLab(&testing.T{}, 4, 1)
	f.Fuzz(func(t *testing.T, src, format string) {
		j, err := checkJob(l, "../examples", "/jobs/fuzz.toml", format, []byte(src))
		if err != nil {
			require.Nil(t, j)
			require.NotEmpty(t, err.Error())
			return
		}
		require.NotEmpty(t, j.Name)
		require.Positive(t, j.Timeout)
		// An accepted job fits the lab, seen from the lab's side: four
		// untagged sim boards.
		nodes := 0
		for _, r := range j.Roles {
			assert.Equal(t, "sim", r.DeviceType, "role %s", r.Name)
			assert.Empty(t, r.Tags, "role %s", r.Name)
			nodes += r.Count
		}
		assert.LessOrEqual(t, nodes, len(l.Boards))
		// Every image it deploys is on the server.
		for _, a := range j.Actions {
			paths := []string{a.Image}
			if a.Images != nil {
				paths = append(paths, a.Images.Kernel, a.Images.Initrd, a.Images.Rootfs)
			}
			for _, p := range paths {
				if p != "" {
					_, err := os.Stat(p)
					assert.NoError(t, err, "image %s", p)
				}
			}
		}
	})
}
