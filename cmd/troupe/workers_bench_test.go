package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/troupe-lab/troupe/workers"
)

// BenchmarkWorkers10x100: a server and 10 worker processes of 100 sim
// boards each, with mutual TLS, on this machine. Per op: the time from
// starting the workers until the server lists all 10 connected. Reported
// besides: the server's RSS with them joined, and its CPU use per second
// while the 10 workers beat for 10 s (a binary built without -race).
func BenchmarkWorkers10x100(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "troupe")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	ca := filepath.Join(dir, "ca")
	run := func(args ...string) {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			b.Fatalf("troupe %v: %v\n%s", args, err, out)
		}
	}
	run("ca", "init", ca)
	labs := make([]string, 10)
	for w := range labs {
		run("ca", "issue", ca, "--name", fmt.Sprintf("w%d", w))
		var l strings.Builder
		for i := 0; i < 100; i++ {
			fmt.Fprintf(&l, "[[board]]\nname = \"w%d-%d\"\ndevice_type = \"sim\"\n", w, i)
		}
		labs[w] = filepath.Join(dir, fmt.Sprintf("w%d.toml", w))
		if err := os.WriteFile(labs[w], []byte(l.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	var rss, cpu float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		httpAddr, wAddr := freeAddrB(b), freeAddrB(b)
		srv := exec.Command(bin, "serve", "--addr", httpAddr, "--data", b.TempDir(), "--workers", wAddr, "--tls", ca)
		if err := srv.Start(); err != nil {
			b.Fatal(err)
		}
		url := "http://" + httpAddr
		waitHTTP(b, url)
		b.StartTimer()
		var procs []*exec.Cmd
		for w := range labs {
			p := exec.Command(bin, "worker", "--server", wAddr, "--lab", labs[w], "--name", fmt.Sprintf("w%d", w), "--tls", ca, "--data", b.TempDir())
			if err := p.Start(); err != nil {
				b.Fatal(err)
			}
			procs = append(procs, p)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for connected(url) < len(labs) {
			if time.Now().After(deadline) {
				b.Fatal("workers did not join within 2 minutes")
			}
			time.Sleep(20 * time.Millisecond) // a deadline poll of the API
		}
		b.StopTimer()
		rss = float64(procStatus(b, srv.Process.Pid, "VmRSS:"))
		t0 := cpuTicks(b, srv.Process.Pid)
		time.Sleep(10 * time.Second) // the window the CPU is measured over
		cpu = float64(cpuTicks(b, srv.Process.Pid)-t0) / 100 / 10
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
		_ = srv.Process.Kill()
		_ = srv.Wait()
		b.StartTimer()
	}
	b.ReportMetric(rss/1024, "server-RSS-MiB")
	b.ReportMetric(cpu*100, "server-CPU-%-idle-10x100")
}

func freeAddrB(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitHTTP(b *testing.B, url string) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := httpClient.Get(url + "/api/v1/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("server did not serve: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // a deadline poll of the API
	}
}

func connected(url string) int {
	resp, err := httpClient.Get(url + "/api/v1/workers")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var ws []workers.WorkerStatus
	if json.NewDecoder(resp.Body).Decode(&ws) != nil {
		return 0
	}
	n := 0
	for _, w := range ws {
		if w.Connected {
			n++
		}
	}
	return n
}

// procStatus reads a kB field of /proc/PID/status.
func procStatus(b *testing.B, pid int, field string) int {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field) {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// cpuTicks is utime+stime of a process, in clock ticks (100/s).
func cpuTicks(b *testing.B, pid int) int {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}
