// Package lab describes a lab: the boards troupe can run jobs on. It reads
// lab files (TOML, strict, with the error style of package jobs), checks
// whether a lab can ever run a job, and assigns boards to a job's nodes.
package lab

import (
	"fmt"
	"os"
	"strings"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/jobs/tomlfile"
)

// Sim is the backend of simulated boards, the only one supported so far.
const Sim = "sim"

// Board is one device of the lab.
type Board struct {
	Name       string
	DeviceType string
	Tags       []string
	Backend    string
	Line       int // in the lab file; 0 for built-in boards
}

// Lab is a set of boards.
type Lab struct {
	Boards []Board // in file order
	File   string
}

// Load reads and parses the lab file at path.
func Load(path string) (*Lab, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load lab: %w", err)
	}
	return Parse(path, data)
}

// Parse parses a lab file read from file (which names it in errors). The
// error, if any, is a jobs.Errors.
func Parse(file string, data []byte) (*Lab, error) {
	doc, root, err := tomlfile.Parse(file, data)
	if err != nil {
		return nil, err
	}
	l := &Lab{File: file}
	root.Only("board")
	root.Require("board")
	tables, _ := root.Tables("board")
	if root.Has("board") && len(tables) == 0 {
		root.Errorf("board", "at least one board is required")
	}
	names := map[string]string{} // board name -> key of its table
	for _, t := range tables {
		b := Board{Backend: Sim, Line: t.Line()}
		t.Only("name", "device_type", "tags", "backend")
		t.Require("name", "device_type")
		if name, ok := t.String("name"); ok {
			b.Name = name
			if !validName(name) {
				t.Errorf("name", "must contain only letters, digits, '_', '.' and '-' (got %q)", name)
			} else if prev, dup := names[name]; dup {
				t.Errorf("name", "duplicate board name %q (also used by %s)", name, prev)
			} else {
				names[name] = t.Path
			}
		}
		if dt, ok := t.String("device_type"); ok {
			if dt == "" {
				t.Errorf("device_type", "must not be empty")
			}
			b.DeviceType = dt
		}
		if tags, ok := t.Strings("tags"); ok && len(tags) > 0 {
			for _, tag := range tags {
				if tag == "" {
					t.Errorf("tags", "tags must not be empty strings")
				}
			}
			b.Tags = tags
		}
		if be, ok := t.String("backend"); ok {
			if be != Sim {
				t.Errorf("backend", "backend %q is not supported yet (supported: %s)", be, Sim)
			}
			b.Backend = be
		}
		l.Boards = append(l.Boards, b)
	}
	if err := doc.Err(); err != nil {
		return nil, err
	}
	return l, nil
}

func validName(s string) bool {
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_.-", c)
		if !ok {
			return false
		}
	}
	return s != ""
}

// ForJob is the built-in sim lab for j: one board per node, sim-0, sim-1,
// ... in j.Nodes() order, with the device type and tags of the node's role.
func ForJob(j *jobs.Job) *Lab {
	l := &Lab{File: "built-in"}
	for i, n := range j.Nodes() {
		r, _ := j.Role(n.Role)
		l.Boards = append(l.Boards, Board{
			Name:       fmt.Sprintf("sim-%d", i),
			DeviceType: r.DeviceType,
			Tags:       append([]string(nil), r.Tags...),
			Backend:    Sim,
		})
	}
	return l
}
