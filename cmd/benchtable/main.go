// Command benchtable reads `go test -bench` output on stdin and prints the
// figures of issue 18 with the goal beside each: the value, the goal and
// whether it is met ("-" where the benchmark did not run). `make bench`
// runs it on the benchmarks' output. Exit 1 if the output reports a
// failed benchmark, 2 if stdin cannot be read.
//
//	go test -run '^$' -bench . ./scheduler | go run ./cmd/benchtable
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// maxInput bounds what is read from stdin.
const maxInput = 64 << 20

func main() {
	data, err := io.ReadAll(io.LimitReader(os.Stdin, maxInput))
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(2)
	}
	results := Parse(string(data))
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "figure\tvalue\tgoal\tmet")
	for _, r := range Table(results) {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Figure, r.Value, r.Goal, r.Met)
	}
	w.Flush()
	// A line for benchmarks that failed: their figures are missing above.
	failed := false
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "FAIL") {
			fmt.Print("benchmark failed: ", line)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
