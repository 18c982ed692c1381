package lava

// The YAML reader: parsing, typed access to nodes, and errors with line and key path.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/troupe-lab/troupe/jobs"
)

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML decodes the single document in data and returns its root node.
func parseYAML(file string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, jobs.Errors{{File: file, Msg: "empty file: no LAVA job definition"}}
		}
		return nil, jobs.Errors{syntaxError(file, err)}
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		return nil, jobs.Errors{{File: file, Line: next.Line, Msg: "a LAVA job file holds one YAML document; found another"}}
	} else if !errors.Is(err, io.EOF) {
		return nil, jobs.Errors{syntaxError(file, err)}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, jobs.Errors{{File: file, Msg: "empty file: no LAVA job definition"}}
	}
	return doc.Content[0], nil
}

func syntaxError(file string, err error) *jobs.Error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &jobs.Error{File: file, Line: line, Msg: "YAML syntax error: " + m[2]}
	}
	return &jobs.Error{File: file, Msg: "YAML syntax error: " + strings.TrimPrefix(msg, "yaml: ")}
}

// importer collects the job and the errors found on the way.
type importer struct {
	file          string
	errs          jobs.Errors
	lavaRoles     map[string]string // LAVA role name -> troupe name ("" if invalid)
	guests        map[string]bool   // troupe names of the guest roles (connection: ssh)
	allRoles      []string          // troupe role names, sorted
	roleTypes     map[string]string // troupe role name -> device type
	actionTimeout time.Duration     // timeouts.action, 0 if not given
	tests         map[string]bool   // test names used
	opts          Options
	perType       map[jobs.ActionType]int64 // timeouts.actions.<name> by troupe action type
	subJob        *subJob                   // protocols.lava-multinode.role: one node's sub-job
	// refusal is the one line that refuses the whole job (ssh guest
	// roles, docker test shells): said alone, without the errors that
	// follow from it.
	refusal *jobs.Error
}

// refuse refuses the whole job for what e is, in one line.
func (im *importer) refuse(e entry, why string) {
	if im.refusal == nil {
		im.refusal = &jobs.Error{File: im.file, Line: e.line, Key: e.path, Msg: why}
	}
}

func (im *importer) warnf(line int, key, format string, args ...any) {
	if im.opts.Warn != nil {
		im.opts.Warn(fmt.Sprintf("%s:%d: %s: warning: %s", im.file, line, key, fmt.Sprintf(format, args...)))
	}
}

func (im *importer) errorf(line int, key, format string, args ...any) {
	im.errs = append(im.errs, &jobs.Error{File: im.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// entry is one key of a mapping.
type entry struct {
	key  string // the key
	path string // full key path
	line int    // line of the key
	v    *yaml.Node
}

// mapping is a YAML mapping with its keys in file order.
type mapping struct {
	path    string
	line    int
	entries []entry
}

func (m *mapping) sub(k string) string {
	if m.path == "" {
		return k
	}
	return m.path + "." + k
}

func (m *mapping) get(k string) (entry, bool) {
	for _, e := range m.entries {
		if e.key == k {
			return e, true
		}
	}
	return entry{}, false
}

// deref follows aliases.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!str":
			return fmt.Sprintf("string %q", n.Value)
		case "!!int":
			return "integer " + n.Value
		case "!!bool":
			return "boolean " + n.Value
		case "!!float":
			return "number " + n.Value
		}
		return fmt.Sprintf("%s %q", strings.TrimPrefix(n.ShortTag(), "!!"), n.Value)
	}
	return "nothing"
}

func (im *importer) typeError(n *yaml.Node, path, want string) {
	im.errorf(n.Line, path, "must be %s (got %s)", want, describe(n))
}

// mapping reads n, which must be a mapping, at path.
func (im *importer) mapping(n *yaml.Node, path string) (*mapping, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		if n != nil {
			im.typeError(n, path, "a mapping")
		}
		return nil, false
	}
	m := &mapping{path: path, line: n.Line}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k == nil || v == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			im.errorf(k.Line, path, "keys must be strings (got %s)", describe(k))
			continue
		}
		e := entry{key: k.Value, path: m.sub(k.Value), line: k.Line, v: v}
		if k.ShortTag() == "!!merge" {
			im.errorf(k.Line, e.path, "YAML merge keys are not supported")
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			// LAVA's YAML loader keeps the last value of a duplicate key.
			im.warnf(k.Line, e.path, "duplicate key: the value on line %d replaces the one on line %d (LAVA keeps the last)", k.Line, prev)
			i := slices.IndexFunc(m.entries, func(x entry) bool { return x.key == k.Value })
			m.entries = slices.Delete(m.entries, i, i+1)
		}
		seen[k.Value] = k.Line
		m.entries = append(m.entries, e)
	}
	return m, true
}

// sequence returns the elements of n, which must be a list.
func (im *importer) sequence(e entry) ([]*yaml.Node, bool) {
	if e.v.Kind != yaml.SequenceNode {
		im.typeError(e.v, e.path, "a list")
		return nil, false
	}
	out := make([]*yaml.Node, len(e.v.Content))
	for i, c := range e.v.Content {
		out[i] = deref(c)
	}
	return out, true
}

func (im *importer) unsupported(e entry, hint string) {
	if hint == "" {
		hint = "not supported: troupe knows no such LAVA key here and refuses it rather than ignore it: remove it"
	}
	im.errorf(e.line, e.path, "%s", hint)
}

func (im *importer) required(m *mapping, keys ...string) {
	for _, k := range keys {
		if _, ok := m.get(k); !ok {
			im.errorf(m.line, m.sub(k), "is required")
		}
	}
}

func isString(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str"
}

func (im *importer) str(n *yaml.Node, path string) (string, bool) {
	if !isString(n) {
		im.typeError(n, path, "a string")
		return "", false
	}
	return n.Value, true
}

func (im *importer) strings(e entry) ([]string, bool) {
	elems, ok := im.sequence(e)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(elems))
	for i, n := range elems {
		s, ok := im.str(n, fmt.Sprintf("%s[%d]", e.path, i))
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func (im *importer) integer(e entry) (int64, bool) {
	var n int64
	if e.v.Kind != yaml.ScalarNode || e.v.ShortTag() != "!!int" || e.v.Decode(&n) != nil {
		im.typeError(e.v, e.path, "an integer")
		return 0, false
	}
	return n, true
}

func (im *importer) boolean(e entry) (bool, bool) {
	var b bool
	if e.v.Kind != yaml.ScalarNode || e.v.Decode(&b) != nil {
		im.typeError(e.v, e.path, "a boolean")
		return false, false
	}
	return b, true
}

var units = map[string]time.Duration{"days": 24 * time.Hour, "hours": time.Hour, "minutes": time.Minute, "seconds": time.Second}

// duration reads a LAVA duration such as {minutes: 5}; it must be > 0.
func (im *importer) duration(e entry) (time.Duration, bool) {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return 0, false
	}
	var total time.Duration
	valid := true
	for _, u := range m.entries {
		unit, known := units[u.key]
		if !known {
			im.errorf(u.line, u.path, "unknown unit; LAVA durations use days, hours, minutes and seconds")
			valid = false
			continue
		}
		n, ok := im.integer(u)
		if !ok {
			valid = false
			continue
		}
		if n < 0 {
			im.errorf(u.line, u.path, "must not be negative (got %d)", n)
			valid = false
			continue
		}
		const limit = 100 * 365 * 24 * time.Hour
		if n > int64(limit/unit) || total+time.Duration(n)*unit > limit {
			im.errorf(u.line, u.path, "too long: durations are limited to 100 years")
			valid = false
			continue
		}
		total += time.Duration(n) * unit
	}
	if !valid {
		return 0, false
	}
	if total <= 0 {
		im.errorf(e.line, e.path, "must be > 0 (give days, hours, minutes or seconds)")
		return 0, false
	}
	return total, true
}
