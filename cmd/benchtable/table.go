package main

import (
	"bufio"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Results maps "<package>/<benchmark name without the -GOMAXPROCS
// suffix>" to its metrics by unit ("ns/op", "s/job", ...); a benchmark
// reported twice keeps its last line.
type Results map[string]map[string]float64

// maxLine bounds one line of input.
const maxLine = 1 << 20

var nameRE = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?$`)

// Parse reads `go test -bench` output: "pkg: <import path>" lines and
// result lines "BenchmarkX-2  <N>  <value> <unit>  <value> <unit> ...".
// Anything else is ignored; so are malformed result lines.
func Parse(out string) Results {
	res := Results{}
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, maxLine)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue
		}
		m := nameRE.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		metrics := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				metrics = nil
				break
			}
			metrics[f[i+1]] = v
		}
		if metrics != nil {
			res[short(pkg)+"/"+m[1]] = metrics
		}
	}
	return res
}

// short is the last element of an import path: "scheduler".
func short(pkg string) string {
	return pkg[strings.LastIndexByte(pkg, '/')+1:]
}

// Row is one line of the table.
type Row struct{ Figure, Value, Goal, Met string }

// goal is one figure: a metric of one benchmark (or a value derived from
// several), and its bound (0: no bound, reported only).
type goal struct {
	figure string
	value  func(Results) (float64, bool)
	unit   string
	below  float64
}

func metric(bench, unit string, scale float64) func(Results) (float64, bool) {
	return func(r Results) (float64, bool) {
		v, ok := r[bench][unit]
		return v * scale, ok
	}
}

// perSync is the cost of one barrier end to end in a job: (the job with
// n syncs − the job without) / n.
func perSync(with, without string, n float64) func(Results) (float64, bool) {
	return func(r Results) (float64, bool) {
		a, ok1 := r[with]["s/job"]
		b, ok2 := r[without]["s/job"]
		return (a - b) / n * 1000, ok1 && ok2
	}
}

var goals = []goal{
	{"host: a shell's start and end (/bin/sh -c :), the machine's speed", metric("runner/BenchmarkHostShellStart", "ms/start", 1), "ms", 0},
	{"1000-node job, 3 barriers: wall", metric("runner/BenchmarkSyncJob/N=1000/syncs=3", "s/job", 1), "s", 15},
	{"1000-node job, 3 barriers: harness CPU", metric("runner/BenchmarkSyncJob/N=1000/syncs=3", "harness-cpu-s/job", 1), "s", 8},
	{"1000-node job, 3 barriers: shells' CPU", metric("runner/BenchmarkSyncJob/N=1000/syncs=3", "shells-cpu-s/job", 1), "s", 0},
	{"1000-node job, 3 barriers: host CPU busy (all processes and the kernel)", metric("runner/BenchmarkSyncJob/N=1000/syncs=3", "host-busy-cpu-s/job", 1), "s", 0},
	{"1000-node job, 3 barriers: tree PSS", metric("runner/BenchmarkSyncJob/N=1000/syncs=3", "tree-pss-MiB", 1), "MiB", 1024},
	{"barrier end to end, 100-node job ((10 syncs - 0)/10)", perSync("runner/BenchmarkSyncJob/N=100/syncs=10", "runner/BenchmarkSyncJob/N=100/syncs=0", 10), "ms", 20},
	{"barrier in a 100-node job, one release to the next (reported: no boots subtracted)", metric("runner/BenchmarkSyncJob/N=100/syncs=10", "barrier-interval-ms", 1), "ms", 0},
	{"1+3 node job end to end", metric("runner/BenchmarkJob/hello-1+3", "s/job", 1), "s", 0.1},
	{"1+3 node job: harness CPU", metric("runner/BenchmarkJob/hello-1+3", "harness-cpu-s/job", 1), "s", 0},
	{"scheduler Plan, 10 000 jobs on 5 000 boards", metric("scheduler/BenchmarkPlan/jobs=10000/boards=5000", "ns/op", 1e-6), "ms", 100},
	{"scheduler Plan, 10 000 jobs on 5 000 boards: CPU", metric("scheduler/BenchmarkPlan/jobs=10000/boards=5000", "cpu-ms/op", 1), "ms", 0},
	{"scheduler Plan, 10 000 jobs on 5 000 boards of 50 workers (a group kept on one host)", metric("scheduler/BenchmarkPlan/jobs=10000/boards=5000/workers=50", "ns/op", 1e-6), "ms", 100},
	{"lab state machine tick, 10 000 jobs on 5 000 boards", metric("labstate/BenchmarkStep/tick", "ns/op", 1e-6), "ms", 100},
	{"coordinator barrier release, 100 members p99", metric("actors/BenchmarkBarrier/members=100", "p99-ms", 1), "ms", 5},
	{"coordinator barrier release, 1000 members p99", metric("actors/BenchmarkBarrier/members=1000", "p99-ms", 1), "ms", 50},
	{"QEMU board (TCG), one-node job end to end", metric("qemu/BenchmarkQemuJob/single", "s/job", 1), "s", 0},
	{"QEMU boards (TCG), two-node job end to end", metric("qemu/BenchmarkQemuJob/pair", "s/job", 1), "s", 0},
	{"barrier end to end, two QEMU boards ((1000 syncs - 0)/1000)", perSync("qemu/BenchmarkQemuJob/pair-syncs=1000", "qemu/BenchmarkQemuJob/pair-syncs=0", 1000), "ms", 0},
	{"server, 100 submitters x 100 jobs, 200 boards: throughput", metric("server/BenchmarkSubmitLoad/submitters=100/jobs=100/boards=200", "jobs/s", 1), "jobs/s", 0},
	{"server, 100 submitters x 100 jobs, 200 boards: submit p50", metric("server/BenchmarkSubmitLoad/submitters=100/jobs=100/boards=200", "submit-p50-ms", 1), "ms", 0},
	{"server, 100 submitters x 100 jobs, 200 boards: submit p99", metric("server/BenchmarkSubmitLoad/submitters=100/jobs=100/boards=200", "submit-p99-ms", 1), "ms", 0},
	{"server, 100 submitters x 100 jobs, 200 boards: harness CPU per job", metric("server/BenchmarkSubmitLoad/submitters=100/jobs=100/boards=200", "harness-cpu-ms/job", 1), "ms", 0},
}

// Table is the figures of the goals, in order.
func Table(r Results) []Row {
	var rows []Row
	for _, g := range goals {
		row := Row{Figure: g.figure, Value: "-", Goal: "(reported)", Met: "-"}
		if g.below > 0 {
			row.Goal = "< " + num(g.below) + " " + g.unit
		}
		if v, ok := g.value(r); ok {
			row.Value = num(v) + " " + g.unit
			if g.below > 0 {
				row.Met = "no"
				if v < g.below {
					row.Met = "yes"
				}
			}
		}
		rows = append(rows, row)
	}
	return rows
}

func num(v float64) string {
	switch {
	case v >= 100 || v <= -100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1 || v <= -1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3g", v)
}
