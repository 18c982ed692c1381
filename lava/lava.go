// Package lava imports LAVA job definitions (YAML, single-node or MultiNode)
// as troupe jobs.
//
// Import is strict in the same way as jobs.Parse: every part of the LAVA job
// that troupe cannot carry out is reported, all problems together, as a
// jobs.Errors whose entries name the file, the line and the key path (for
// example "actions[2].test.definitions[0].from"). Nothing is dropped
// silently. The imported job is checked by encoding it as a troupe job file
// and parsing that with jobs.Parse, so it obeys every troupe rule.
//
// # Mapping
//
//   - job_name → name; characters other than letters, digits, '.', '_' and
//     '-' are replaced by '-' (a run of them by one '-'), leading and
//     trailing '-' are removed.
//   - timeouts.job → timeout; timeouts.action → the timeout of every action
//     without one of its own (otherwise troupe's defaults apply: deploy 10m,
//     boot 5m, test: none, bounded by the job timeout). LAVA durations are
//     mappings of days, hours, minutes and seconds, which are added up.
//   - priority → priority: high = 75, medium = 50, low = 25, or an integer
//     0..100 as it is.
//   - protocols.lava-multinode.timeout → multinode timeout;
//     protocols.lava-multinode.roles.<role> → a role with device_type,
//     count, tags, essential and timeout. Troupe role names cannot contain
//     '-', so '-' in LAVA role names becomes '_' (the role: lists of the
//     actions are renamed too; test scripts are kept verbatim).
//   - A single-node job (top-level device_type, optional top-level tags, no
//     lava-multinode protocol) becomes one role "node" with count 1.
//   - deploy → a deploy action; images.rootfs.url, a local file given as
//     file:///path or as a path (relative paths are relative to the job
//     file), becomes the image. to and os are accepted and ignored.
//   - boot → a boot action; method and prompts are accepted and ignored
//     (troupe's boot finds the login and shell prompts itself).
//   - test → one troupe test action per definition, all with the role list
//     and timeout of the LAVA action (each definition gets the whole
//     timeout). Only from: inline definitions are imported. The test name is
//     the definition's name, made a valid troupe name like job_name and
//     unique with -2, -3, ... suffixes. The script is the run.steps joined
//     by newlines, preceded by "export NAME='value'" lines for the
//     definition's params (defaults from the repository) and parameters
//     (from the job, overriding the params). The path of LAVA's cache file,
//     /tmp/lava_multi_node_cache.txt, becomes
//     ${LAVA_MULTI_NODE_CACHE:-/tmp/lava_multi_node_cache.txt}, so that it
//     points into a simulated board's sandbox. The definition's path and the
//     repository's metadata are descriptive only and ignored.
//   - An action without role runs on all roles (troupe's rule).
//
// # Ignored keys
//
// The top-level keys visibility, metadata and notify have no meaning for
// troupe and are ignored, as are the values of the accepted keys named
// above (deploy to/os, boot method/prompts, definition path, repository
// metadata). Every other key is either mapped or reported as an error.
package lava

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/jobs/tomlfile"
)

// Ignored lists the top-level keys of a LAVA job that Import accepts and
// ignores.
var Ignored = []string{"visibility", "metadata", "notify"}

// Priorities are the troupe priorities of LAVA's priority words.
var Priorities = map[string]int{"high": 75, "medium": 50, "low": 25}

// SingleNodeRole is the name of the role of an imported single-node job.
const SingleNodeRole = "node"

// Load reads the LAVA job definition at path and imports it.
func Load(path string) (*jobs.Job, error) {
	data, err := tomlfile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load LAVA job: %w", err)
	}
	return Import(path, data)
}

// IsLAVA reports whether the file at path with contents data looks like a
// LAVA job definition: its name ends in .yaml or .yml, or its contents are a
// YAML mapping with a job_name or protocols key.
func IsLAVA(path string, data []byte) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		return true
	}
	if CheckBounds(path, data) != nil {
		return false
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return false
	}
	root := deref(doc.Content[0])
	if root == nil || root.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i]; k.Kind == yaml.ScalarNode && (k.Value == "job_name" || k.Value == "protocols") {
			return true
		}
	}
	return false
}

// Import converts the LAVA job definition data, read from file, to a troupe
// job. file names the file in errors, and relative image paths are resolved
// against its directory, as in jobs.Parse. Problems are returned together
// as jobs.Errors.
func Import(file string, data []byte) (*jobs.Job, error) {
	if err := CheckBounds(file, data); err != nil {
		return nil, err
	}
	root, err := parseYAML(file, data)
	if err != nil {
		return nil, err
	}
	if err := checkExpanded(file, root); err != nil {
		return nil, err
	}
	im := &importer{file: file, lavaRoles: map[string]string{}, tests: map[string]bool{}}
	j := im.job(root)
	if len(im.errs) > 0 {
		sort.SliceStable(im.errs, func(a, b int) bool { return im.errs[a].Line < im.errs[b].Line })
		return nil, im.errs
	}
	return validate(j)
}

// validate round-trips j through Encode and jobs.Parse, so that the job
// returned obeys every troupe rule. It keeps the YAML lines of the actions.
func validate(j *jobs.Job) (*jobs.Job, error) {
	var buf bytes.Buffer
	if err := j.Encode(&buf); err != nil {
		return nil, jobs.Errors{{File: j.File, Msg: err.Error()}}
	}
	parsed, err := jobs.Parse(j.File, buf.Bytes())
	if err != nil {
		return nil, jobs.Errors{{File: j.File, Msg: "the imported job is not a valid troupe job:\n" + err.Error()}}
	}
	if len(parsed.Actions) != len(j.Actions) {
		return nil, jobs.Errors{{File: j.File, Msg: "the imported job is not a valid troupe job: actions lost in encoding"}}
	}
	for i := range parsed.Actions {
		parsed.Actions[i].Line = j.Actions[i].Line
	}
	return parsed, nil
}

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
	allRoles      []string          // troupe role names, sorted
	actionTimeout time.Duration     // timeouts.action, 0 if not given
	tests         map[string]bool   // test names used
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
			im.errorf(k.Line, e.path, "duplicate key (first defined on line %d)", prev)
			continue
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
		hint = "not supported"
	}
	im.errorf(e.line, e.path, "%s", hint)
}

// unsupportedEach reports every key of e if it is a mapping, else e.
func (im *importer) unsupportedEach(e entry, hint string) {
	if e.v.Kind == yaml.MappingNode && len(e.v.Content) > 0 {
		if m, ok := im.mapping(e.v, e.path); ok {
			for _, k := range m.entries {
				im.unsupported(k, hint)
			}
			return
		}
	}
	im.unsupported(e, hint)
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

// sanitize makes s a valid troupe job or test name: characters other than
// letters, digits, '.', '_' and '-' become '-' (one for each run), and '-' is
// trimmed from both ends.
func sanitize(s string) string {
	var b strings.Builder
	replaced := false
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			b.WriteRune(c)
			replaced = false
		} else if !replaced {
			b.WriteByte('-')
			replaced = true
		}
	}
	return strings.Trim(b.String(), "-")
}

// roleName makes a LAVA role name a troupe one; ok is false if it cannot.
func roleName(s string) (string, bool) {
	t := strings.ReplaceAll(s, "-", "_")
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return "", false
		}
	}
	return t, t != ""
}

func (im *importer) job(root *yaml.Node) *jobs.Job {
	j := &jobs.Job{File: im.file, Timeout: jobs.DefaultTimeout, Priority: jobs.DefaultPriority, MultinodeTimeout: jobs.DefaultMultinodeTimeout}
	m, ok := im.mapping(root, "")
	if !ok {
		return j
	}
	var protocols, actions, deviceType, tags *entry
	for _, e := range m.entries {
		switch e.key {
		case "job_name":
			if s, ok := im.str(e.v, e.path); ok {
				j.Name = sanitize(s)
				if j.Name == "" {
					im.errorf(e.line, e.path, "%q has no letters or digits to make a troupe job name of", s)
				}
			}
		case "timeouts":
			im.timeouts(e, j)
		case "priority":
			im.priority(e, j)
		case "protocols":
			protocols = &e
		case "device_type":
			deviceType = &e
		case "tags":
			tags = &e
		case "actions":
			actions = &e
		case "context":
			im.unsupported(e, "not supported: troupe has no per-device context; device settings belong in the lab file")
		case "visibility", "metadata", "notify": // Ignored
		default:
			im.unsupported(e, "")
		}
	}
	im.required(m, "job_name", "actions")

	multinode := false
	if protocols != nil {
		multinode = im.protocols(*protocols, j)
	}
	switch {
	case multinode:
		if deviceType != nil {
			im.unsupported(*deviceType, "a MultiNode job has no top-level device_type; give each role its device_type")
		}
		if tags != nil {
			im.unsupported(*tags, "a MultiNode job has no top-level tags; give each role its tags")
		}
	case deviceType != nil:
		im.singleNode(*deviceType, tags, j)
	default:
		if tags != nil {
			im.unsupported(*tags, "top-level tags need a top-level device_type (single-node job)")
		}
		im.errorf(m.line, "device_type", "is required: give device_type (single-node job) or protocols.lava-multinode.roles (MultiNode job)")
	}
	for _, r := range j.Roles {
		im.allRoles = append(im.allRoles, r.Name)
	}

	if actions != nil {
		j.Actions = im.actions(*actions)
	}
	return j
}

func (im *importer) timeouts(e entry, j *jobs.Job) {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return
	}
	for _, t := range m.entries {
		switch t.key {
		case "job":
			if d, ok := im.duration(t); ok {
				j.Timeout = d
			}
		case "action":
			if d, ok := im.duration(t); ok {
				im.actionTimeout = d
			}
		case "actions":
			im.unsupportedEach(t, "per-action-type timeouts are not supported; give the action its own timeout")
		case "connection", "connections":
			im.unsupportedEach(t, "not supported: troupe has no connection timeouts")
		default:
			im.unsupported(t, "")
		}
	}
}

func (im *importer) priority(e entry, j *jobs.Job) {
	if isString(e.v) {
		p, ok := Priorities[e.v.Value]
		if !ok {
			im.errorf(e.line, e.path, "must be high, medium, low or an integer 0..100 (got %q)", e.v.Value)
			return
		}
		j.Priority = p
		return
	}
	n, ok := im.integer(e)
	if !ok {
		return
	}
	if n < 0 || n > 100 {
		im.errorf(e.line, e.path, "must be between 0 and 100 (got %d)", n)
		return
	}
	j.Priority = int(n)
}

// protocols reads the protocols and reports whether lava-multinode is one.
func (im *importer) protocols(e entry, j *jobs.Job) bool {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return false
	}
	found := false
	for _, p := range m.entries {
		if p.key != "lava-multinode" {
			im.unsupported(p, "not supported: troupe imports only the lava-multinode protocol")
			continue
		}
		found = true
		mn, ok := im.mapping(p.v, p.path)
		if !ok {
			continue
		}
		// The timeout first: it is the default of the roles' timeouts.
		if t, ok := mn.get("timeout"); ok {
			if d, ok := im.duration(t); ok {
				j.MultinodeTimeout = d
			}
		}
		for _, k := range mn.entries {
			switch k.key {
			case "timeout":
			case "roles":
				j.Roles = im.roles(k, j.MultinodeTimeout)
			default:
				im.unsupported(k, "")
			}
		}
		im.required(mn, "roles")
	}
	return found
}

func (im *importer) roles(e entry, multinode time.Duration) []jobs.Role {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return nil
	}
	if len(m.entries) == 0 {
		im.errorf(e.line, e.path, "at least one role is required")
	}
	byName := map[string]string{} // troupe name -> LAVA name
	var roles []jobs.Role
	total := 0
	for _, re := range m.entries {
		name, ok := roleName(re.key)
		im.lavaRoles[re.key] = name
		if !ok {
			im.errorf(re.line, re.path, "role name %q may contain only letters, digits, '_' and '-'", re.key)
			continue
		}
		if prev, dup := byName[name]; dup {
			im.errorf(re.line, re.path, "roles %q and %q would both be called %q in troupe ('-' becomes '_')", prev, re.key, name)
			im.lavaRoles[re.key] = ""
			continue
		}
		byName[name] = re.key
		r, ok := im.role(re, name, multinode)
		if !ok {
			continue
		}
		total += r.Count
		roles = append(roles, r)
	}
	if total > jobs.MaxNodes {
		im.errorf(e.line, e.path, "the job has %d nodes; at most %d are allowed", total, jobs.MaxNodes)
	}
	slices.SortFunc(roles, func(a, b jobs.Role) int { return strings.Compare(a.Name, b.Name) })
	return roles
}

func (im *importer) role(e entry, name string, multinode time.Duration) (jobs.Role, bool) {
	r := jobs.Role{Name: name, Count: 1, Timeout: multinode}
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return r, false
	}
	for _, k := range m.entries {
		switch k.key {
		case "device_type":
			r.DeviceType, _ = im.deviceType(k)
		case "count":
			if n, ok := im.integer(k); ok {
				if n < 1 || n > jobs.MaxNodes {
					im.errorf(k.line, k.path, "must be between 1 and %d (got %d)", jobs.MaxNodes, n)
				} else {
					r.Count = int(n)
				}
			}
		case "tags":
			r.Tags = im.tags(k)
		case "essential":
			r.Essential, _ = im.boolean(k)
		case "timeout":
			if d, ok := im.duration(k); ok {
				r.Timeout = d
			}
		case "context":
			im.unsupported(k, "not supported: troupe has no per-device context; device settings belong in the lab file")
		case "request", "expect_role":
			im.unsupported(k, "not supported: troupe starts all roles together")
		default:
			im.unsupported(k, "")
		}
	}
	im.required(m, "device_type")
	return r, true
}

func (im *importer) deviceType(e entry) (string, bool) {
	s, ok := im.str(e.v, e.path)
	if ok && s == "" {
		im.errorf(e.line, e.path, "must not be empty")
		return "", false
	}
	return s, ok
}

func (im *importer) tags(e entry) []string {
	tags, ok := im.strings(e)
	if !ok {
		return nil
	}
	for _, t := range tags {
		if t == "" {
			im.errorf(e.line, e.path, "tags must not be empty strings")
			return nil
		}
	}
	if len(tags) == 0 {
		return nil
	}
	return tags
}

func (im *importer) singleNode(dt entry, tags *entry, j *jobs.Job) {
	r := jobs.Role{Name: SingleNodeRole, Count: 1, Timeout: j.MultinodeTimeout}
	r.DeviceType, _ = im.deviceType(dt)
	if tags != nil {
		r.Tags = im.tags(*tags)
	}
	j.Roles = []jobs.Role{r}
}

func (im *importer) actions(e entry) []jobs.Action {
	elems, ok := im.sequence(e)
	if !ok {
		return nil
	}
	if len(elems) == 0 {
		im.errorf(e.line, e.path, "at least one action is required")
	}
	var out []jobs.Action
	for i, n := range elems {
		path := fmt.Sprintf("%s[%d]", e.path, i)
		m, ok := im.mapping(n, path)
		if !ok {
			continue
		}
		if len(m.entries) != 1 {
			im.errorf(m.line, path, "an action must be a mapping with one key: deploy, boot or test (got %d keys)", len(m.entries))
			continue
		}
		a := m.entries[0]
		switch a.key {
		case "deploy":
			if act, ok := im.deploy(a); ok {
				out = append(out, act)
			}
		case "boot":
			if act, ok := im.boot(a); ok {
				out = append(out, act)
			}
		case "test":
			out = append(out, im.test(a)...)
		default:
			im.errorf(a.line, a.path, "%q actions are not supported; troupe imports deploy, boot and test actions", a.key)
		}
	}
	for i := range out {
		out[i].Index = i
	}
	return out
}

// actionRoles reads the role list of an action.
func (im *importer) actionRoles(e entry) []string {
	names, ok := im.strings(e)
	if !ok {
		return nil
	}
	if len(names) == 0 {
		im.errorf(e.line, e.path, "must not be empty (omit it to run on all roles)")
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		t, known := im.lavaRoles[n]
		switch {
		case !known:
			im.errorf(e.line, e.path, "undefined role %q", n)
		case t == "": // an invalid role, reported already
		case seen[n]:
			im.errorf(e.line, e.path, "duplicate role %q", n)
		default:
			seen[n] = true
			out = append(out, t)
		}
	}
	return out
}

// common reads the keys every action has: role and timeout. It reports
// whether e is one of them.
func (im *importer) common(e entry, a *jobs.Action) bool {
	switch e.key {
	case "role":
		if roles := im.actionRoles(e); roles != nil {
			a.Roles = roles
		}
	case "timeout":
		if d, ok := im.duration(e); ok {
			a.Timeout = d
		}
	default:
		return false
	}
	return true
}

func (im *importer) newAction(typ jobs.ActionType, line int, def time.Duration) jobs.Action {
	if im.actionTimeout > 0 {
		def = im.actionTimeout
	}
	return jobs.Action{Type: typ, Roles: im.allRoles, Timeout: def, Line: line}
}

func (im *importer) deploy(e entry) (jobs.Action, bool) {
	a := im.newAction(jobs.Deploy, e.line, jobs.DefaultDeployTimeout)
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return a, false
	}
	for _, k := range m.entries {
		switch {
		case im.common(k, &a):
		case k.key == "to" || k.key == "os":
			im.str(k.v, k.path)
		case k.key == "images":
			a.Image = im.images(k)
		default:
			im.unsupported(k, "")
		}
	}
	return a, true
}

func (im *importer) images(e entry) string {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return ""
	}
	image := ""
	for _, k := range m.entries {
		if k.key != "rootfs" {
			im.unsupported(k, "not supported: troupe deploys only the rootfs image")
			continue
		}
		rm, ok := im.mapping(k.v, k.path)
		if !ok {
			continue
		}
		for _, r := range rm.entries {
			if r.key != "url" {
				im.unsupported(r, "")
				continue
			}
			if u, ok := im.str(r.v, r.path); ok {
				image = im.localPath(r, u)
			}
		}
		im.required(rm, "url")
	}
	return image
}

var scheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)

// localPath turns the url of an image into a local path: file:///path or a
// path, relative to the job file.
func (im *importer) localPath(e entry, s string) string {
	if s == "" {
		im.errorf(e.line, e.path, "must not be empty")
		return ""
	}
	if !scheme.MatchString(s) {
		if filepath.IsAbs(s) {
			return filepath.Clean(s)
		}
		return filepath.Join(filepath.Dir(im.file), s)
	}
	u, err := url.Parse(s)
	if err != nil {
		im.errorf(e.line, e.path, "invalid URL %q: %v", s, err)
		return ""
	}
	switch strings.ToLower(u.Scheme) {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			im.errorf(e.line, e.path, "%q is on another host; only local files are supported", s)
			return ""
		}
		if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || !filepath.IsAbs(u.Path) {
			im.errorf(e.line, e.path, "%q is not a file:///absolute/path URL", s)
			return ""
		}
		return filepath.Clean(u.Path)
	default:
		im.errorf(e.line, e.path, "%q needs the network; troupe fetches nothing, use a local file (file:///path or a path relative to the job file)", s)
		return ""
	}
}

func (im *importer) boot(e entry) (jobs.Action, bool) {
	a := im.newAction(jobs.Boot, e.line, jobs.DefaultBootTimeout)
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return a, false
	}
	for _, k := range m.entries {
		switch {
		case im.common(k, &a):
		case k.key == "method":
			im.str(k.v, k.path)
		case k.key == "prompts":
			im.strings(k)
		default:
			im.unsupported(k, "")
		}
	}
	return a, true
}

func (im *importer) test(e entry) []jobs.Action {
	base := im.newAction(jobs.Test, e.line, 0)
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return nil
	}
	var defs *entry
	for _, k := range m.entries {
		switch {
		case im.common(k, &base):
		case k.key == "definitions":
			defs = &k
		default:
			im.unsupported(k, "")
		}
	}
	im.required(m, "definitions")
	if defs == nil {
		return nil
	}
	elems, ok := im.sequence(*defs)
	if !ok {
		return nil
	}
	if len(elems) == 0 {
		im.errorf(defs.line, defs.path, "at least one test definition is required")
	}
	var out []jobs.Action
	for i, n := range elems {
		if a, ok := im.definition(n, fmt.Sprintf("%s[%d]", defs.path, i), base); ok {
			out = append(out, a)
		}
	}
	return out
}

// param is a test parameter, exported to the test script.
type param struct{ name, value string }

var shellName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (im *importer) definition(n *yaml.Node, path string, base jobs.Action) (jobs.Action, bool) {
	a := base
	m, ok := im.mapping(n, path)
	if !ok {
		return a, false
	}
	a.Line = m.line
	name := ""
	if e, ok := m.get("name"); ok {
		name, _ = im.str(e.v, e.path)
	}
	from, ok := m.get("from")
	if !ok {
		im.required(m, "from")
		return a, false
	}
	if s, ok := im.str(from.v, from.path); !ok {
		return a, false
	} else if s != "inline" {
		why := "is not supported"
		if s == "git" || s == "url" {
			why = "needs the network"
		}
		im.errorf(from.line, from.path, "%q %s; troupe imports only from: inline test definitions (definition %q)", s, why, name)
		return a, false
	}
	var params, overrides []param
	var steps []string
	valid := true
	for _, k := range m.entries {
		switch k.key {
		case "from", "path": // path names an inline definition, nothing more
		case "name":
			if name == "" {
				continue // reported below
			}
			a.Name = im.testName(sanitize(name))
			if a.Name == "" {
				im.errorf(k.line, k.path, "%q has no letters or digits to make a troupe test name of", name)
				valid = false
			}
		case "repository":
			var ok bool
			params, steps, ok = im.repository(k, name)
			valid = valid && ok
		case "parameters":
			var ok bool
			overrides, ok = im.params(k)
			valid = valid && ok
		case "lava-signal":
			im.unsupported(k, "not supported: troupe reads test results from the console")
			valid = false
		default:
			im.unsupported(k, "")
			valid = false
		}
	}
	if e, ok := m.get("name"); !ok {
		im.required(m, "name")
		valid = false
	} else if name == "" && isString(e.v) {
		im.errorf(e.line, e.path, "must not be empty")
		valid = false
	}
	if _, ok := m.get("repository"); !ok {
		im.required(m, "repository")
		valid = false
	}
	if !valid || a.Name == "" || steps == nil {
		return a, false
	}
	a.Run = script(merge(params, overrides), steps)
	return a, true
}

// testName makes name unique among the test names of the job.
func (im *importer) testName(name string) string {
	if name == "" {
		return ""
	}
	unique := name
	for i := 2; im.tests[unique]; i++ {
		unique = fmt.Sprintf("%s-%d", name, i)
	}
	im.tests[unique] = true
	return unique
}

// repository reads an inline test definition. steps is nil if it has none.
func (im *importer) repository(e entry, name string) (params []param, steps []string, ok bool) {
	if isString(e.v) {
		im.errorf(e.line, e.path, "a remote repository needs the network; troupe imports only from: inline test definitions (definition %q)", name)
		return nil, nil, false
	}
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return nil, nil, false
	}
	ok = true
	for _, k := range m.entries {
		switch k.key {
		case "metadata": // descriptive only
			if _, isMap := im.mapping(k.v, k.path); !isMap {
				ok = false
			}
		case "run":
			var good bool
			steps, good = im.run(k)
			ok = ok && good
		case "params":
			var good bool
			params, good = im.params(k)
			ok = ok && good
		case "install":
			im.unsupported(k, "not supported: put the commands in run.steps")
			ok = false
		case "parse":
			im.unsupported(k, "not supported: troupe records results only through lava-test-case")
			ok = false
		default:
			im.unsupported(k, "")
			ok = false
		}
	}
	if _, has := m.get("run"); !has {
		im.required(m, "run")
		ok = false
	}
	return params, steps, ok
}

func (im *importer) run(e entry) ([]string, bool) {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return nil, false
	}
	var steps []string
	ok = true
	for _, k := range m.entries {
		if k.key != "steps" {
			im.unsupported(k, "")
			ok = false
			continue
		}
		elems, good := im.sequence(k)
		if !good {
			ok = false
			continue
		}
		steps = []string{}
		blank := true
		for i, n := range elems {
			p := fmt.Sprintf("%s[%d]", k.path, i)
			if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
				hint := ""
				if n.Kind == yaml.MappingNode {
					hint = `; quote steps that contain ": "`
				}
				im.errorf(n.Line, p, "must be a command (got %s)%s", describe(n), hint)
				ok = false
				continue
			}
			if strings.TrimSpace(n.Value) != "" {
				blank = false
			}
			steps = append(steps, n.Value)
		}
		if blank && ok {
			im.errorf(k.line, k.path, "must hold at least one command")
			ok = false
		}
	}
	if _, has := m.get("steps"); !has {
		im.required(m, "steps")
		ok = false
	}
	if !ok {
		return nil, false
	}
	return steps, true
}

func (im *importer) params(e entry) ([]param, bool) {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return nil, false
	}
	var out []param
	for _, k := range m.entries {
		if !shellName.MatchString(k.key) {
			im.errorf(k.line, k.path, "%q is not a shell variable name", k.key)
			ok = false
			continue
		}
		if k.v.Kind != yaml.ScalarNode {
			im.typeError(k.v, k.path, "a string or number")
			ok = false
			continue
		}
		v := k.v.Value
		if k.v.ShortTag() == "!!null" {
			v = ""
		}
		out = append(out, param{k.key, v})
	}
	return out, ok
}

// merge applies the job's parameters to the definition's params.
func merge(params, overrides []param) []param {
	out := slices.Clone(params)
	for _, o := range overrides {
		i := slices.IndexFunc(out, func(p param) bool { return p.name == o.name })
		if i >= 0 {
			out[i].value = o.value
		} else {
			out = append(out, o)
		}
	}
	return out
}

// cacheFile is where LAVA test definitions read MultiNode data from; on a
// simulated board the cache lives in the board's sandbox instead.
const cacheFile = "/tmp/lava_multi_node_cache.txt"

// script builds the test script: the parameters, then the steps, with
// LAVA's cache file path made to follow $LAVA_MULTI_NODE_CACHE.
func script(params []param, steps []string) string {
	var b strings.Builder
	for _, p := range params {
		fmt.Fprintf(&b, "export %s='%s'\n", p.name, strings.ReplaceAll(p.value, "'", `'\''`))
	}
	b.WriteString(strings.ReplaceAll(strings.Join(steps, "\n"), cacheFile, "${LAVA_MULTI_NODE_CACHE:-"+cacheFile+"}"))
	return b.String()
}
