package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchSize reads a size of BenchmarkWorkersJobs from the environment.
func benchSize(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// BenchmarkWorkersJobs: a server and TROUPE_BENCH_WORKERS worker processes
// (default 10) of TROUPE_BENCH_BOARDS sim boards each (default 100,
// unsandboxed: lab sandbox = "none"), mutual TLS on loopback, a binary
// without -race. Per op: from submitting one job with a node on every
// board that meets at 3 barriers, and TROUPE_BENCH_SMALL small one-node
// jobs (default 200) queued behind it, until all have ended. Reported:
// the barriers' cost end to end (from the last node's arrival, as its
// worker logged it, to the last node's release), the server's peak RSS
// and its CPU over the run, and the workers' CPU over the run (all ten
// together, in % of one core). With TROUPE_BENCH_LOGS=DIR the server's and
// workers' logs are kept in DIR (server.log, wN.log). The server and
// workers run with the default liveness limits (5 s), or with
// TROUPE_BENCH_TIMEOUT=D with D (serve --worker-timeout, worker
// --server-timeout).
func BenchmarkWorkersJobs(b *testing.B) {
	nw, nb, small := benchSize("TROUPE_BENCH_WORKERS", 10), benchSize("TROUPE_BENCH_BOARDS", 100), benchSize("TROUPE_BENCH_SMALL", 200)
	dir := b.TempDir()
	bin := filepath.Join(dir, "troupe")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	ca := filepath.Join(dir, "ca")
	run := func(args ...string) {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			b.Fatalf("troupe %v: %v\n%s", args, err, out)
		}
	}
	run("ca", "init", ca)
	labs := make([]string, nw)
	for w := range labs {
		run("ca", "issue", ca, "--name", fmt.Sprintf("w%d", w))
		l := "sandbox = \"none\"\n"
		for i := range nb {
			l += fmt.Sprintf("[[board]]\nname = \"w%d-%d\"\ndevice_type = \"sim\"\n", w, i)
		}
		labs[w] = filepath.Join(dir, fmt.Sprintf("w%d.toml", w))
		if err := os.WriteFile(labs[w], []byte(l), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	big := fmt.Sprintf(`name = "big"
timeout = "30m"
[roles.n]
device_type = "sim"
count = %d
[[action]]
type = "boot"
timeout = "10m"
[[action]]
type = "test"
name = "barriers"
timeout = "20m"
run = '''
for k in 1 2 3; do echo "B$k-IN"; troupe-sync b$k; echo "B$k-OUT"; done
'''
`, nw*nb)
	const smallJob = `name = "small-%d"
timeout = "30m"
[roles.n]
device_type = "sim"
[[action]]
type = "boot"
timeout = "10m"
[[action]]
type = "test"
name = "t"
run = "troupe-test-case ok --result pass"
`
	var barrier, rss, cpu, wcpu, load float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		httpAddr, wAddr, data := freeAddrB(b), freeAddrB(b), b.TempDir()
		srv := exec.Command(bin, append([]string{"serve", "--addr", httpAddr, "--data", data, "--workers", wAddr, "--tls", ca}, limit("--worker-timeout")...)...)
		srv.Stderr = benchLog(b, "server.log")
		if err := srv.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { killWait(srv) })
		url := "http://" + httpAddr
		waitHTTP(b, url)
		var procs []*exec.Cmd
		for w := range labs {
			p := exec.Command(bin, append([]string{"worker", "--server", wAddr, "--lab", labs[w], "--name", fmt.Sprintf("w%d", w), "--tls", ca, "--data", b.TempDir()}, limit("--server-timeout")...)...)
			p.Stderr = benchLog(b, fmt.Sprintf("w%d.log", w))
			if err := p.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { killWait(p) })
			procs = append(procs, p)
		}
		deadline := time.Now().Add(5 * time.Minute)
		for connected(url) < nw {
			if time.Now().After(deadline) {
				b.Fatal("workers did not join within 5 minutes")
			}
			time.Sleep(20 * time.Millisecond) // a deadline poll of the API
		}
		t0 := cpuTicks(b, srv.Process.Pid)
		w0 := 0
		for _, p := range procs {
			w0 += cpuTicks(b, p.Process.Pid)
		}
		start := time.Now()
		b.StartTimer()
		ids := []string{postJob(b, url, big)}
		for s := range small {
			ids = append(ids, postJob(b, url, fmt.Sprintf(smallJob, s)))
		}
		for _, id := range ids {
			waitEndedB(b, url, id, time.Now().Add(40*time.Minute))
		}
		b.StopTimer()
		wall := time.Since(start).Seconds()
		cpu = float64(cpuTicks(b, srv.Process.Pid)-t0) / 100 / wall
		w1 := 0
		for _, p := range procs {
			w1 += cpuTicks(b, p.Process.Pid)
		}
		wcpu = float64(w1-w0) / 100 / wall
		load = loadAvg(b)
		rss = float64(procStatus(b, srv.Process.Pid, "VmHWM:"))
		barrier = barrierCost(b, filepath.Join(data, "jobs", ids[0], "logs", "group.log"))
		for _, p := range procs {
			killWait(p)
		}
		killWait(srv)
		b.StartTimer()
	}
	b.ReportMetric(barrier*1000, "barrier-ms")
	b.ReportMetric(rss/1024, "server-peak-RSS-MiB")
	b.ReportMetric(cpu*100, "server-CPU-%")
	b.ReportMetric(wcpu*100, "workers-CPU-%")
	b.ReportMetric(load, "load-1m-at-end")
}

// loadAvg is the host's 1-minute load average (the benchmark's own boards
// included: the host is shared).
func loadAvg(b *testing.B) float64 {
	b.Helper()
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		b.Fatal(err)
	}
	f, err := strconv.ParseFloat(strings.Fields(string(data))[0], 64)
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// limit is flag with $TROUPE_BENCH_TIMEOUT, or nothing (the default).
func limit(flag string) []string {
	if d := os.Getenv("TROUPE_BENCH_TIMEOUT"); d != "" {
		return []string{flag, d}
	}
	return nil
}

// killWait ends a process of the benchmark (also when it failed); a
// second call does nothing.
func killWait(p *exec.Cmd) {
	if p.ProcessState != nil {
		return
	}
	_ = p.Process.Kill()
	_ = p.Wait()
}

// benchLog is where a process of the benchmark logs: a file in
// $TROUPE_BENCH_LOGS, or nowhere.
func benchLog(b *testing.B, name string) io.Writer {
	b.Helper()
	dir := os.Getenv("TROUPE_BENCH_LOGS")
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.Close() })
	return f
}

func postJob(b *testing.B, url, body string) string {
	b.Helper()
	resp, err := httpClient.Post(url+"/api/v1/jobs", "application/toml", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var created struct{ ID, Error string }
	if err := json.NewDecoder(resp.Body).Decode(&created); err != nil || resp.StatusCode != http.StatusCreated {
		b.Fatalf("submit: %d %v %s", resp.StatusCode, err, created.Error)
	}
	return created.ID
}

func waitEndedB(b *testing.B, url, id string, deadline time.Time) {
	b.Helper()
	for {
		resp, err := httpClient.Get(url + "/api/v1/jobs/" + id)
		if err != nil {
			b.Fatal(err)
		}
		var j struct{ Status, Error string }
		err = json.NewDecoder(resp.Body).Decode(&j)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		switch j.Status {
		case "queued", "running":
		case "complete":
			return
		default:
			b.Fatalf("job %s ended %s: %s", id, j.Status, j.Error)
		}
		if time.Now().After(deadline) {
			b.Fatalf("job %s not ended", id)
		}
		time.Sleep(200 * time.Millisecond) // a deadline poll of the API
	}
}

var barrierLineRE = regexp.MustCompile(`(?m)^(\S+) \S+ B(\d)-(IN|OUT)$`)

// barrierCost is the mean over the barriers of the time from the last
// node's arrival to the last node's release, from the big job's log.
func barrierCost(b *testing.B, groupLog string) float64 {
	b.Helper()
	data, err := os.ReadFile(groupLog)
	if err != nil {
		b.Fatal(err)
	}
	last := map[string]time.Time{}
	for _, m := range barrierLineRE.FindAllStringSubmatch(string(data), -1) {
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			b.Fatal(err)
		}
		if k := m[2] + m[3]; at.After(last[k]) {
			last[k] = at
		}
	}
	var sum float64
	for k := 1; k <= 3; k++ {
		in, out := last[fmt.Sprintf("%dIN", k)], last[fmt.Sprintf("%dOUT", k)]
		if in.IsZero() || out.IsZero() {
			b.Fatalf("barrier %d not in the log", k)
		}
		sum += out.Sub(in).Seconds()
	}
	return sum / 3
}
