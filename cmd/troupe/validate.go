package main

import (
	"fmt"
	"io"

	"github.com/BurntSushi/toml"

	"github.com/troupe-lab/troupe/jobs/tomlfile"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/lava"
	"github.com/troupe-lab/troupe/scenario"
)

// File kinds troupe validate knows.
const (
	kindJob      = "job"
	kindLab      = "lab"
	kindScenario = "scenario"
)

// cmdValidate checks job, lab and scenario files without running anything.
// The kind of each file is told by its content, or by --lab / --scenario.
func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", stderr)
	asLab := fs.Bool("lab", false, "the files are lab files")
	asScenario := fs.Bool("scenario", false, "the files are scenario files")
	lavaOpts := lavaFlags(fs, stderr)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() == 0 {
		return usageError(fs, "no file")
	}
	if *asLab && *asScenario {
		return usageError(fs, "--lab and --scenario: give at most one")
	}
	code := exitOK
	for _, f := range fs.Args() {
		kind := ""
		switch {
		case *asLab:
			kind = kindLab
		case *asScenario:
			kind = kindScenario
		}
		opts := lavaOpts()
		opts.Downloads.Defer = true // images are fetched and checked when a run fetches them
		what, err := validateFile(f, kind, opts)
		if err != nil {
			fmt.Fprintln(stderr, err)
			code = exitInvalid
			continue
		}
		fmt.Fprintf(stdout, "%s: ok (%s)\n", f, what)
	}
	return code
}

// validateFile parses the file at path as kind ("": told by its content)
// and describes it; a LAVA job is imported with opts.
func validateFile(path, kind string, opts lava.Options) (string, error) {
	if kind == "" {
		data, err := tomlfile.ReadFile(path)
		if err != nil {
			return "", err
		}
		kind = fileKind(path, data)
	}
	switch kind {
	case kindLab:
		l, err := lab.Load(path)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("lab, %d boards", len(l.Boards)), nil
	case kindScenario:
		s, err := scenario.Load(path)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("scenario %s", s.Name), nil
	}
	j, err := loadJob(path, opts)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("job %s, %d nodes", j.Name, len(j.Nodes())), nil
}

// fileKind tells a lab or scenario file from a job by its top-level keys;
// anything else (LAVA YAML, a file that does not parse) is a job, whose
// parser then says what is wrong.
func fileKind(path string, data []byte) string {
	if lava.IsLAVA(path, data) {
		return kindJob
	}
	// Bounded before it is decoded: a hostile file is a job, whose parser
	// refuses it with the reason.
	if tomlfile.CheckBounds(path, data) != nil {
		return kindJob
	}
	var top map[string]toml.Primitive
	if _, err := toml.Decode(string(data), &top); err != nil {
		return kindJob
	}
	has := func(keys ...string) bool {
		for _, k := range keys {
			if _, ok := top[k]; ok {
				return true
			}
		}
		return false
	}
	switch {
	case has("roles", "action", "multinode"):
		return kindJob
	case has("board", "health_check", "tftp", "bad_after", "retries"):
		return kindLab
	case has("fault", "expect", "seed", "job", "lab"):
		return kindScenario
	}
	return kindJob
}
