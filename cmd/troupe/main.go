// Command troupe runs multi-node test jobs on labs of embedded boards,
// simulated or real.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/jobs/tomlfile"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/lava"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/runner"
	"github.com/troupe-lab/troupe/scheduler"
)

// Exit codes.
const (
	exitOK         = 0
	exitTestFailed = 1
	exitIncomplete = 2
	exitInvalid    = 3
)

const usage = `usage:
  troupe run [--lab LAB.toml] [--out DIR] [-v] JOB.toml|JOB.yaml...
  troupe validate [--lab | --scenario] FILE...   check job, lab and scenario files (kind told by content)
  troupe import-lava JOB.yaml     print a LAVA job as a troupe job file
  troupe scenario [--seed N] [--out DIR] PATH...   run fault-injection scenarios (files or directories)
  troupe simboard --control SOCKET (--pty PATH | --tcp ADDR) [--name N]   one simulated board as a process
  troupe simboard power SOCKET on|off|status
  troupe power BOARD on|off|cycle|status [--lab LAB]   switch a real board by hand (without --lab: through the server)
  troupe reserve BOARD [--for 2h] | release BOARD   hold a server's board for manual work (admin token)
  troupe console BOARD --lab LAB   the board's console on this terminal (Ctrl-] leaves)
  troupe serve [--lab LAB.toml] [--data DIR] [--images DIR] [--addr 127.0.0.1:8480] [--token-file F] [--keep N] [--keep-days D] [--workers ADDR] [--tls DIR]   the lab server (API, web UI)
  troupe worker --server HOST:PORT --lab LAB.toml [--name W] [--tls DIR]   own these boards, join a server's lab
  troupe ca init DIR | ca issue DIR --name W   the lab CA, server and worker certificates (mutual TLS)
  troupe submit FILE [--follow]   submit a job to a server; --follow streams its log, exit code as run
  troupe jobs [--status S] | jobs show ID | jobs cancel ID
  troupe devices
  troupe version                  module version, VCS commit, Go version
  (client commands take --server URL and --token T, or TROUPE_SERVER and TROUPE_TOKEN)

flags go before or after the arguments; -- ends them; troupe COMMAND -h: its flags and an example
exit codes: 0 complete, 1 a test case failed, 2 incomplete or canceled, 3 invalid input
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitInvalid
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "import-lava":
		return cmdImportLAVA(args[1:], stdout, stderr)
	case "scenario":
		return cmdScenario(args[1:], stdout, stderr)
	case "simboard":
		return cmdSimboard(args[1:], stdout, stderr)
	case "power":
		return cmdPower(args[1:], stdout, stderr)
	case "console":
		return cmdConsole(args[1:], stdout, stderr)
	case "reserve":
		return cmdReserve(args[1:], stdout, stderr)
	case "release":
		return cmdRelease(args[1:], stdout, stderr)
	case "serve":
		return cmdServe(args[1:], stdout, stderr)
	case "submit":
		return cmdSubmit(args[1:], stdout, stderr)
	case "jobs":
		return cmdJobs(args[1:], stdout, stderr)
	case "devices":
		return cmdDevices(args[1:], stdout, stderr)
	case "version":
		return cmdVersion(args[1:], stdout, stderr)
	case "worker":
		return cmdWorker(args[1:], stdout, stderr)
	case "ca":
		return cmdCA(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		if len(args) == 2 && args[0] == "help" {
			return run([]string{args[1], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "troupe: unknown command %q\n%s", args[0], usage)
	return exitInvalid
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lavaOpts := lavaFlags(fs, stderr)
	labFile := fs.String("lab", "", "lab file (default: a built-in sim lab with the boards the jobs need)")
	out := fs.String("out", "", "results directory (default results/<job>-<timestamp>); with several jobs, DIR/<job>/ each")
	verbose := fs.Bool("v", false, "debug logs on stderr")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() == 0 {
		return usageError(fs, "no job file")
	}
	// The lab first: its LAVA mirrors serve the jobs' imports.
	var l *lab.Lab
	if *labFile != "" {
		var err error
		if l, err = lab.Load(*labFile); err != nil {
			fmt.Fprintln(stderr, err)
			return exitInvalid
		}
	}
	var js []*jobs.Job
	code := exitOK
	for _, f := range fs.Args() {
		job, err := loadJob(f, withLabMirrors(lavaOpts(), l))
		if err != nil {
			fmt.Fprintln(stderr, err)
			code = exitInvalid
			continue
		}
		js = append(js, job)
	}
	if code != exitOK {
		return code
	}
	if l == nil {
		standInNotice(stderr, js)
	}
	if *out == "" {
		name := js[0].Name
		if len(js) > 1 {
			name = "run"
		}
		*out = filepath.Join("results", name+"-"+time.Now().Format("20060102-150405"))
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	// On a terminal: a live table, the other lines above it. Piped: a
	// line per phase change, each in one write (callers run concurrently).
	say := func(line string) { _, _ = io.WriteString(stdout, line+"\n") }
	var prog *progress
	var lines func(string, logbook.Entry)
	many := len(js) > 1
	key := func(job, node string) string {
		if many {
			return job + "/" + node
		}
		return node
	}
	if size := terminalSize(stdout); size != nil {
		prog = newProgress(time.Now, size)
		say = prog.Print
		lines = func(job string, e logbook.Entry) { prog.Line(key(job, e.Node), e.Text) }
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			if prog != nil {
				prog.Print(fmt.Sprintf("troupe: %s received, canceling", s))
			} else {
				fmt.Fprintf(stderr, "troupe: %s received, canceling\n", s)
			}
			cancel(fmt.Errorf("received %s", s))
		case <-ctx.Done():
		}
	}()

	start := time.Now()
	for _, j := range js {
		fmt.Fprintf(stdout, "job %s: %d nodes\n", j.Name, len(j.Nodes()))
	}
	fmt.Fprintf(stdout, "results in %s\n", *out)
	if prog != nil {
		prog.show(stdout)
	}
	var whyMu sync.Mutex
	lastWhy := map[string]string{}
	rs, err := runner.RunMany(ctx, js, l, runner.Options{
		Out:    *out,
		Logger: logger,
		Events: func(e actors.Event) {
			node := key(e.Job, e.Node)
			if prog != nil {
				prog.Phase(node, e.Board, e.Phase, e.Time)
				if e.Detail != "" {
					prog.Print(fmt.Sprintf("%s %s: %s", node, e.Phase, e.Detail))
				}
				return
			}
			line := fmt.Sprintf("%7.3fs  %-12s %-10s %s", e.Time.Sub(start).Seconds(), node, e.Board, e.Phase)
			if e.Detail != "" {
				line += ": " + e.Detail
			}
			say(line)
		},
		Waiting: func(job string, e scheduler.Explanation) {
			whyMu.Lock()
			// Say why a job waits once it has waited a while, and again
			// whenever the reason changes.
			if time.Since(start) < waitNotice || lastWhy[job] == e.Summary {
				whyMu.Unlock()
				return
			}
			lastWhy[job] = e.Summary
			whyMu.Unlock()
			say(fmt.Sprintf("%7.3fs  %s waits: %s", time.Since(start).Seconds(), job, e.Summary))
		},
		Lines: lines,
	})
	if prog != nil {
		for i, r := range rs {
			if r != nil {
				prog.Results(key(js[i].Name, ""), r.Tests)
			}
		}
		prog.stop()
	}
	if err != nil {
		fmt.Fprintf(stderr, "troupe run: %v\n", err)
		if runner.IsInvalid(err) {
			return exitInvalid
		}
	}
	code = exitOK
	for _, r := range rs {
		if r == nil {
			code = max(code, exitIncomplete)
			continue
		}
		fmt.Fprintln(stdout)
		report.Summary(stdout, r)
		code = max(code, r.ExitCode())
	}
	if len(rs) == 0 {
		code = exitIncomplete
	}
	return code
}

// waitNotice is how long a job waits before troupe run says why.
const waitNotice = 3 * time.Second

// loadJob reads a troupe job file, or a LAVA job definition (YAML)
// imported with opts; its images must be under the job file's directory.
func loadJob(path string, opts lava.Options) (*jobs.Job, error) {
	data, err := tomlfile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read job: %w", err)
	}
	parse := jobs.Parse
	if lava.IsLAVA(path, data) {
		parse = func(path string, data []byte) (*jobs.Job, error) { return lava.ImportWith(path, data, opts) }
	}
	j, err := parse(path, data)
	if err != nil {
		return nil, err
	}
	if err := confineImages(j, filepath.Dir(path), opts); err != nil {
		return nil, err
	}
	return j, nil
}

func cmdImportLAVA(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("import-lava", stderr)
	lavaOpts := lavaFlags(fs, stderr)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 1 {
		return usageError(fs, "want one LAVA job file, got %d arguments", fs.NArg())
	}
	// Printing a job fetches no image: the job names the cache paths a
	// run of the LAVA job fetches them to.
	opts := lavaOpts()
	d := *opts.Downloads
	d.Defer = true
	opts.Downloads = &d
	job, err := loadLAVA(fs.Arg(0), opts)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitInvalid
	}
	for _, p := range unfetched(job) {
		fmt.Fprintf(stderr, "troupe: %s is not fetched yet: `troupe run %s` fetches it\n", p, fs.Arg(0))
	}
	if err := job.Encode(stdout); err != nil {
		fmt.Fprintln(stderr, err)
		return exitIncomplete
	}
	return exitOK
}
