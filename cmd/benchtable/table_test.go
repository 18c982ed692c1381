package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sample = `goos: linux
pkg: github.com/troupe-lab/troupe/scheduler
BenchmarkPlan/jobs=10000/boards=5000-2   	       5	  80000000 ns/op	  110.6 cpu-ms/op	24076299 B/op	  135772 allocs/op
PASS
pkg: github.com/troupe-lab/troupe/runner
BenchmarkSyncJob/N=100/syncs=0-2    	       3	   2.500 s/job	   1.2 harness-cpu-s/job
BenchmarkSyncJob/N=100/syncs=10-2   	       3	   2.650 s/job	  31.5 barrier-interval-ms
BenchmarkJob/hello-1+3-2   	1	0.2 s/job
BenchmarkHostShellStart-2   	1000	2900000 ns/op	2.900 ms/start
BenchmarkBroken-2   1   x ns/op
pkg: github.com/troupe-lab/troupe/qemu
BenchmarkQemuJob/pair-syncs=0-2         	       3	       232.4 rss-MiB/VM	         4.500 s/job	         0 ns/op
BenchmarkQemuJob/pair-syncs=1000-2      	       3	       232.4 rss-MiB/VM	         7.000 s/job	         0 ns/op
pkg: github.com/troupe-lab/troupe/server
BenchmarkSubmitLoad/submitters=100/jobs=100/boards=200-2         	       1	520000000000 ns/op	        21.60 harness-cpu-ms/job	        19.25 jobs/s	       75.50 submit-p50-ms	       568.6 submit-p99-ms
--- FAIL: BenchmarkOther
`

func TestParse(t *testing.T) {
	r := Parse(sample)
	assert.Equal(t, 80000000.0, r["scheduler/BenchmarkPlan/jobs=10000/boards=5000"]["ns/op"])
	assert.Equal(t, 110.6, r["scheduler/BenchmarkPlan/jobs=10000/boards=5000"]["cpu-ms/op"])
	assert.Equal(t, 1.2, r["runner/BenchmarkSyncJob/N=100/syncs=0"]["harness-cpu-s/job"])
	assert.NotContains(t, r, "runner/BenchmarkBroken", "a malformed value drops the line")
}

func TestTable(t *testing.T) {
	rows := map[string]Row{}
	for _, row := range Table(Parse(sample)) {
		rows[row.Figure] = row
	}
	plan := rows["scheduler Plan, 10 000 jobs on 5 000 boards"]
	assert.Equal(t, Row{plan.Figure, "80.00 ms", "< 100 ms", "yes"}, plan)
	barrier := rows["barrier end to end, 100-node job ((10 syncs - 0)/10)"]
	assert.Equal(t, "15.00 ms", barrier.Value, "(2.65 s - 2.5 s) / 10")
	assert.Equal(t, "yes", barrier.Met)
	interval := rows["barrier in a 100-node job, one release to the next (reported: no boots subtracted)"]
	assert.Equal(t, Row{interval.Figure, "31.50 ms", "(reported)", "-"}, interval)
	hello := rows["1+3 node job end to end"]
	assert.Equal(t, "no", hello.Met, "0.2 s is not below 0.1 s")
	missing := rows["1000-node job, 3 barriers: wall"]
	require.Equal(t, "-", missing.Value, "not run")
	assert.Equal(t, "-", missing.Met)
	qemu := rows["barrier end to end, two QEMU boards ((1000 syncs - 0)/1000)"]
	assert.Equal(t, Row{qemu.Figure, "2.50 ms", "(reported)", "-"}, qemu, "(7 s - 4.5 s) / 1000")
	host := rows["host: a shell's start and end (/bin/sh -c :), the machine's speed"]
	assert.Equal(t, Row{host.Figure, "2.90 ms", "(reported)", "-"}, host)
	server := "server, 100 submitters x 100 jobs, 200 boards: "
	assert.Equal(t, Row{server + "throughput", "19.25 jobs/s", "(reported)", "-"}, rows[server+"throughput"])
	assert.Equal(t, "75.50 ms", rows[server+"submit p50"].Value)
	assert.Equal(t, "569 ms", rows[server+"submit p99"].Value)
	assert.Equal(t, "21.60 ms", rows[server+"harness CPU per job"].Value)
}

// FuzzParse: any input parses without panic, and every result has a
// metric.
func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add("BenchmarkX-2 1 1 ns/op\n")
	f.Add("pkg: \nBenchmark 1 1 a 2 b")
	f.Fuzz(func(t *testing.T, s string) {
		for name, m := range Parse(s) {
			if len(m) == 0 {
				t.Fatalf("%s: no metric", name)
			}
		}
	})
}
