package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/troupe-lab/troupe/faults"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/lava"
	"github.com/troupe-lab/troupe/runner"
	"github.com/troupe-lab/troupe/scenario"
)

// cmdScenario runs scenario files: each injects its seeded faults into a
// simulated lab and checks how troupe reacted.
func cmdScenario(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scenario", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seedFlag := fs.String("seed", "", "run every scenario with this seed instead of its own")
	out := fs.String("out", "", "results directory (default results/scenarios-<timestamp>), one folder per scenario")
	verbose := fs.Bool("v", false, "debug logs on stderr")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() == 0 {
		return usageError(fs, "no scenario file or directory")
	}
	var seed *uint64
	if *seedFlag != "" {
		s, err := strconv.ParseUint(*seedFlag, 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "troupe scenario: --seed %q: not a whole number >= 0\n", *seedFlag)
			return exitInvalid
		}
		seed = &s
	}
	scs, err := scenario.LoadDir(fs.Args()...)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitInvalid
	}
	if *out == "" {
		*out = filepath.Join("results", "scenarios-"+time.Now().Format("20060102-150405"))
	}
	level := slog.LevelError + 4 // the faults make the harness log errors on purpose
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	type row struct{ name, verdict, diff, took string }
	var rows []row
	code := exitOK
	for i, sc := range scs {
		s := sc.Seed
		if seed != nil {
			s = *seed
		}
		start := time.Now()
		diffs, err := playScenario(sc, s, filepath.Join(*out, fmt.Sprintf("%02d-%s", i+1, strings.TrimSuffix(filepath.Base(sc.File), ".toml"))), logger, stdout)
		took := time.Since(start).Round(10 * time.Millisecond).String()
		switch {
		case err != nil:
			fmt.Fprintf(stderr, "scenario %s: %v\n", sc.File, err)
			rows = append(rows, row{sc.Name, "ERROR", err.Error(), took})
			code = max(code, exitInvalid)
		case len(diffs) > 0:
			var ds []string
			for _, d := range diffs {
				ds = append(ds, d.String())
			}
			rows = append(rows, row{sc.Name, "FAIL", strings.Join(ds, "; "), took})
			fmt.Fprintf(stdout, "scenario %q failed:\n  %s\n  reproduce: troupe scenario --seed %d %s\n", sc.Name, strings.Join(ds, "\n  "), s, sc.File)
			code = max(code, exitTestFailed)
		default:
			rows = append(rows, row{sc.Name, "PASS", "", took})
		}
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tVERDICT\tTIME\tWHAT DIFFERED")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.name, r.verdict, r.took, r.diff)
	}
	_ = tw.Flush()
	return code
}

// playScenario runs one scenario with seed and returns what differed from
// its expectations; err is for a scenario that could not be run at all.
func playScenario(sc *scenario.Scenario, seed uint64, out string, logger *slog.Logger, stdout io.Writer) ([]scenario.Diff, error) {
	var job *jobs.Job
	var err error
	if sc.JobPath != "" {
		job, err = loadJob(sc.JobPath, lava.DefaultOptions())
	} else {
		if job, err = jobs.Parse(sc.File, []byte(sc.JobTOML)); err == nil {
			err = job.ConfineImages(filepath.Dir(sc.File))
		}
	}
	if err != nil {
		return nil, err
	}
	var l *lab.Lab
	if sc.LabPath != "" {
		if l, err = lab.Load(sc.LabPath); err != nil {
			return nil, err
		}
	} else {
		l = lab.ForJob(job)
	}
	plan, err := sc.Plan(seed, func(role string) []string {
		var ns []string
		for _, n := range job.Nodes() {
			if n.Role == role {
				ns = append(ns, n.Name)
			}
		}
		return ns
	})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "scenario %q (seed %d), plan:\n", sc.Name, seed)
	for _, line := range strings.Split(strings.TrimRight(plan.String(), "\n"), "\n") {
		fmt.Fprintf(stdout, "  %s\n", line)
	}

	var mu sync.Mutex
	health := map[string]string{}
	for _, b := range l.Boards {
		health[b.Name] = "good"
		if b.Health != "" {
			health[b.Name] = b.Health
		} else if _, ok := l.HealthCheck(b.DeviceType); ok {
			health[b.Name] = "unknown"
		}
	}
	inj := faults.New(plan, l, func(s string) { fmt.Fprintf(stdout, "  %s\n", s) })
	defer inj.Stop()
	rs, err := runner.RunMany(context.Background(), []*jobs.Job{job}, l, runner.Options{
		Out:    out,
		Logger: logger,
		Open:   inj.Open,
		Events: inj.Event,
		HealthChanged: func(board, h string) {
			mu.Lock()
			defer mu.Unlock()
			health[board] = h
		},
	})
	ended := time.Now()
	if err != nil && runner.IsInvalid(err) {
		return nil, err
	}
	if len(rs) == 0 || rs[0] == nil {
		return nil, fmt.Errorf("no results: %v", err)
	}
	inj.Stop()
	mu.Lock()
	defer mu.Unlock()
	return sc.Expect.Check(scenario.Outcome{
		Results: rs[0], Exit: rs[0].ExitCode(), FaultAt: inj.FiredAt(), EndedAt: ended, Boards: health,
	}), nil
}
