package lava

// The test definitions: inline LAVA test definitions to troupe test scripts.

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/troupe-lab/troupe/jobs"
)

func (im *importer) test(e entry) []jobs.Action {
	base := im.newAction(jobs.Test, e.line, 0)
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return nil
	}
	var defs *entry
	for _, k := range m.entries {
		switch {
		case im.common(k, &base), im.actionKey(k, &base, "test"):
		case k.key == "definitions":
			defs = &k
		case k.key == "monitors", k.key == "interactive":
			im.unsupported(k, "not supported: troupe tests are shell scripts (definitions)")
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
			if len(out) > 0 {
				a.Before = nil // the requests come before the LAVA action, once
			}
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
	} else if s == "git" {
		if name == "" {
			im.required(m, "name")
			return a, false
		}
		a.Name = im.testName(sanitize(name))
		if a.Name == "" {
			im.errorf(m.line, m.sub("name"), "%q has no letters or digits to make a troupe test name of", name)
			return a, false
		}
		return im.gitDefinition(im.opts.Repos, m, a, name, im.opts.Warn)
	} else if s != "inline" {
		im.errorf(from.line, from.path, "%q is not supported; troupe imports from: inline and from: git test definitions (definition %q)", s, name)
		return a, false
	}
	var params, overrides []param
	var steps []string
	var td testDef
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
			params, steps, ok = im.repository(k, name, &td)
			valid = valid && ok
		case "parameters", "params":
			p, ok := im.params(k)
			overrides = append(overrides, p...)
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
	if len(td.deps) > 0 {
		im.warnf(m.line, path, "install.deps (%s) are not installed: troupe boards install nothing, the image must hold them", strings.Join(td.deps, " "))
	}
	a.Run = script(a.Name, merge(params, overrides), td.install, steps)
	if !im.pattern(&a, td, m.line, path) {
		return a, false
	}
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

// repository reads an inline test definition. steps is nil if it has none;
// td holds its install and parse sections.
func (im *importer) repository(e entry, name string, td *testDef) (params []param, steps []string, ok bool) {
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
			n := len(im.errs)
			im.install(k, td)
			ok = ok && len(im.errs) == n
		case "parse":
			n := len(im.errs)
			im.parse(k, td)
			ok = ok && len(im.errs) == n
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

// script builds the test script: TESTRUN_ID and the parameters, then
// the install steps and run steps (see steps).
func script(testrun string, params []param, install, run []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "export TESTRUN_ID=%s\n", quote(testrun))
	for _, p := range params {
		fmt.Fprintf(&b, "export %s='%s'\n", p.name, strings.ReplaceAll(p.value, "'", `'\''`))
	}
	b.WriteString(steps(install, run))
	return b.String()
}

// installFailed is what a test prints when its install steps failed.
const installFailed = "troupe: install.steps failed (exit status $?): run.steps skipped, as LAVA skips them"

// steps is the part of a test script LAVA's install.sh and run.sh hold.
// The install steps run as LAVA's lava-test-runner runs install.sh: as a
// script of their own, without -e (only the last step's status counts),
// and when it fails the run steps are skipped. The run steps run as
// run.sh under "sh -e": set -e, so the first failing step ends the test.
// LAVA's cache file path is made to follow $LAVA_MULTI_NODE_CACHE.
func steps(install, run []string) string {
	var b strings.Builder
	if len(install) > 0 {
		fmt.Fprintf(&b, "(\n%s\n) || { echo %s; exit 1; }\n", strings.Join(install, "\n"), strings.ReplaceAll(quote(installFailed), "$?", `'"$?"'`))
	}
	b.WriteString("set -e\n")
	for i, step := range run {
		if i > 0 {
			b.WriteByte('\n')
		}
		// As LAVA writes run.sh: in a step that hands a command to a
		// helper (--shell, --cmd), $1, $2, ... reach the helper's eval
		// unexpanded (awk '{print $1}').
		if strings.Contains(step, "--shell") || strings.Contains(step, "--cmd") {
			step = positional.ReplaceAllString(step, `\$$${1}`)
		}
		b.WriteString(step)
	}
	return strings.ReplaceAll(b.String(), cacheFile, "${LAVA_MULTI_NODE_CACHE:-"+cacheFile+"}")
}

var positional = regexp.MustCompile(`\$(\d+)\b`)
