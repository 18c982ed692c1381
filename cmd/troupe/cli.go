package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// commandHelp is what `troupe CMD -h` says about a command.
type commandHelp struct {
	synopsis string // the usage line(s), without "usage: "
	about    string
	example  string
}

// commandHelps is keyed by flag set name: the command ("run"), or command and
// subcommand ("simboard power").
var commandHelps = map[string]commandHelp{
	"run": {
		synopsis: "troupe run [--lab LAB.toml] [--out DIR] [-v] JOB.toml|JOB.yaml...",
		about:    "Run jobs on a lab (default: a built-in sim lab with the boards they need) and write their results.\nOn a terminal a live table shows each node's phase; piped, one line per phase change.",
		example:  "troupe run examples/hello-multinode.toml --out results/hello",
	},
	"validate": {
		synopsis: "troupe validate [--lab | --scenario] FILE...",
		about:    "Check job files (troupe TOML or LAVA YAML), lab files and scenario files without running them.\nThe kind of each file is told by its content; --lab or --scenario say it.",
		example:  "troupe validate examples/*.toml",
	},
	"import-lava": {
		synopsis: "troupe import-lava JOB.yaml",
		about:    "Print a LAVA job definition as a troupe job file.",
		example:  "troupe import-lava examples/lava-multinode.yaml > job.toml",
	},
	"scenario": {
		synopsis: "troupe scenario [--seed N] [--out DIR] [-v] PATH...",
		about:    "Run fault-injection scenarios (files, or directories of them) and check how troupe reacted.",
		example:  "troupe scenario scenarios/ --seed 99",
	},
	"simboard": {
		synopsis: "troupe simboard --control SOCKET (--pty PATH | --tcp ADDR) [--name N] [--bootloader u-boot]\n       troupe simboard power SOCKET on|off|status",
		about:    "Run one simulated board as a process, with its console on a pseudo-terminal or a TCP port\nand its power switched through a control socket.",
		example:  "troupe simboard --control /tmp/sim.sock --tcp 127.0.0.1:4001",
	},
	"simboard power": {
		synopsis: "troupe simboard power SOCKET on|off|status",
		about:    "Switch or read the power of a troupe simboard.",
		example:  "troupe simboard power /tmp/sim.sock on",
	},
	"serve": {
		synopsis: "troupe serve [--lab LAB.toml] [--data DIR] [--addr 127.0.0.1:8480] [--token-file F] [--workers ADDR [--tls DIR]] [-v]",
		about:    "Run the lab server: the HTTP API (docs/api.md) and the web UI.",
		example:  "troupe serve --lab examples/labs/rpi-farm.toml --data ./troupe-data",
	},
	"worker": {
		synopsis: "troupe worker --server HOST:PORT --lab WORKER-LAB.toml [--name W] [--tls DIR] [--listen ADDR] [--advertise HOST:PORT] [-v]",
		about:    "Own the boards of a lab file on this host and join a server's lab (troupe serve --workers).\nWith --tls, DIR holds ca.pem and W.pem, W-key.pem from troupe ca issue; without, loopback only.",
		example:  "troupe worker --server lab.example:8481 --lab rack1.toml --name rack1 --tls ./ca",
	},
	"ca init": {
		synopsis: "troupe ca init DIR",
		about:    "Make the lab CA (ca.pem, ca-key.pem) and the server's certificate (server.pem, server-key.pem) in DIR.",
		example:  "troupe ca init ./ca",
	},
	"ca issue": {
		synopsis: "troupe ca issue DIR --name W",
		about:    "Add worker W's certificate and key (W.pem, W-key.pem) to DIR, signed by its lab CA.",
		example:  "troupe ca issue ./ca --name rack1",
	},
	"submit": {
		synopsis: "troupe submit [--follow] [--server URL] [--token T] FILE",
		about:    "Submit a job to a server. --follow streams its log until it ends (on a terminal with a live\ntable of the nodes) and exits with the code troupe run would.",
		example:  "troupe submit examples/hello-multinode.toml --follow",
	},
	"jobs": {
		synopsis: "troupe jobs [--status S] [--server URL] [--token T]\n       troupe jobs show ID\n       troupe jobs cancel ID",
		about:    "List a server's jobs, show one (status, why it waits, nodes, test cases) or cancel one.",
		example:  "troupe jobs show 7 --server http://lab:8480",
	},
	"devices": {
		synopsis: "troupe devices [--server URL] [--token T]",
		about:    "List a server's boards: type, backend, health, the job on each.",
		example:  "troupe devices --server http://lab:8480",
	},
	"version": {
		synopsis: "troupe version",
		about:    "Print troupe's module version, the VCS commit it was built from and the Go version.",
		example:  "troupe version",
	},
}

// parseFlags parses fs's flags from anywhere in args: before, between or
// after the arguments; "--" ends the flags. The arguments are fs.Args()
// afterwards. It returns ok false when the command must end with code:
// exitOK after -h/--help (the command's usage on stdout), exitInvalid after
// a bad flag (the error and the usage on fs.Output()).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (code int, ok bool) {
	out := fs.Output()
	var msg bytes.Buffer
	fs.SetOutput(&msg)
	fs.Usage = func() {}
	err := fs.Parse(interspersed(fs, args))
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout, fs)
		return exitOK, false
	case err != nil:
		fmt.Fprintf(out, "troupe %s: %s", fs.Name(), msg.String())
		printUsage(out, fs)
		return exitInvalid, false
	}
	return 0, true
}

// interspersed reorders args as flags, "--", arguments, so that one
// fs.Parse reads flags from anywhere and fs.Args() is the arguments. A
// flag that takes a value takes the next arg unless written --name=value.
func interspersed(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a) // "-" is an argument (stdin), as usual
			continue
		}
		flags = append(flags, a)
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // fs.Parse reports it
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 == len(args) {
			return flags // fs.Parse reports the missing value
		}
		flags = append(flags, args[i+1])
		i++
	}
	return append(append(flags, "--"), pos...)
}

// usageError says what is wrong with a command line, then the command's
// usage, on fs.Output(), and returns exitInvalid.
func usageError(fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(fs.Output(), "troupe %s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	printUsage(fs.Output(), fs)
	return exitInvalid
}

// printUsage writes fs's usage: synopsis, what it does, its flags, an
// example. It ends with a newline.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	h, ok := commandHelps[fs.Name()]
	if !ok {
		h = commandHelp{synopsis: "troupe " + fs.Name() + " [flags] ARGS..."}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "usage: %s\n", h.synopsis)
	if h.about != "" {
		fmt.Fprintf(&b, "\n%s\n", h.about)
	}
	b.WriteString("\nflags (before or after the arguments; -- ends them):\n")
	fs.VisitAll(func(f *flag.Flag) {
		kind, text := flag.UnquoteUsage(f)
		dashes := "--"
		if len(f.Name) == 1 {
			dashes = "-"
		}
		fmt.Fprintf(&b, "  %s%s", dashes, f.Name)
		if kind != "" {
			fmt.Fprintf(&b, " %s", kind)
		}
		fmt.Fprintf(&b, "\n        %s", text)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(&b, " (default %q)", f.DefValue)
		}
		b.WriteString("\n")
	})
	b.WriteString("  -h, --help\n        this help\n")
	if h.example != "" {
		fmt.Fprintf(&b, "\nexample:\n  %s\n", h.example)
	}
	_, _ = io.WriteString(w, b.String())
}

// newFlags is the flag set of a command without flags of its own (but -h
// and --).
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// cmdVersion is `troupe version`: module version, VCS commit, Go version.
func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", stderr)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return usageError(fs, "no arguments expected, got %q", fs.Args())
	}
	fmt.Fprintln(stdout, version())
	return exitOK
}

// version describes this build: "troupe MODULE v1.2.3 (commit abc…,
// 2026-…, modified) go1.24.1".
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "troupe (no build information)"
	}
	return describeBuild(bi)
}

func describeBuild(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	vcs := map[string]string{}
	for _, s := range bi.Settings {
		vcs[s.Key] = s.Value
	}
	commit := "commit unknown"
	if c := vcs["vcs.revision"]; c != "" {
		commit = "commit " + c
		if t := vcs["vcs.time"]; t != "" {
			commit += ", " + t
		}
		if vcs["vcs.modified"] == "true" {
			commit += ", modified"
		}
	}
	return fmt.Sprintf("troupe %s %s (%s) %s", bi.Main.Path, v, commit, bi.GoVersion)
}
