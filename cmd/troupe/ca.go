package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/troupe-lab/troupe/labca"
)

// cmdCA is `troupe ca init DIR` and `troupe ca issue DIR --name W`.
func cmdCA(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: troupe ca init DIR | troupe ca issue DIR --name W")
		return exitInvalid
	}
	switch args[0] {
	case "init":
		fs := flag.NewFlagSet("ca init", flag.ContinueOnError)
		fs.SetOutput(stderr)
		if code, ok := parseFlags(fs, args[1:], stdout); !ok {
			return code
		}
		if fs.NArg() != 1 {
			return usageError(fs, "want one directory, got %q", fs.Args())
		}
		if err := labca.Init(fs.Arg(0)); err != nil {
			fmt.Fprintf(stderr, "troupe ca init: %v\n", err)
			return exitInvalid
		}
		fmt.Fprintf(stdout, "lab CA and server certificate in %s (keep ca-key.pem there)\n", fs.Arg(0))
		return exitOK
	case "issue":
		fs := flag.NewFlagSet("ca issue", flag.ContinueOnError)
		fs.SetOutput(stderr)
		name := fs.String("name", "", "the worker's name (its certificate's name)")
		if code, ok := parseFlags(fs, args[1:], stdout); !ok {
			return code
		}
		if fs.NArg() != 1 || *name == "" {
			return usageError(fs, "want one directory and --name")
		}
		if err := labca.Issue(fs.Arg(0), *name); err != nil {
			fmt.Fprintf(stderr, "troupe ca issue: %v\n", err)
			return exitInvalid
		}
		fmt.Fprintf(stdout, "certificate of worker %s in %s: copy ca.pem, %s.pem and %s-key.pem to its host\n", *name, fs.Arg(0), *name, *name)
		return exitOK
	}
	fmt.Fprintf(stderr, "troupe ca: unknown subcommand %q (init, issue)\n", args[0])
	return exitInvalid
}
