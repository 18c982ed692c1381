package lava

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/troupe-lab/troupe/jobs"
)

// MaxDeliveredRepo bounds the files of a test definition repository that
// troupe types through a board's console with the test script.
const MaxDeliveredRepo = 512 << 10

// testDef is a LAVA test definition file, as a from: git definition names
// it: metadata (descriptive), params (defaults), install, run and parse.
type testDef struct {
	params  []param
	deps    []string // install.deps: package names, not installed by troupe
	install []string // install.steps
	steps   []string // run.steps
	pattern string   // parse.pattern, a valid Go regexp
	fixup   [][2]string
}

// testDefinition reads the test definition data, read from file (named in
// errors as it is: URL and path). Problems are added to im's errors.
func (im *importer) testDefinition(file string, data []byte) (testDef, bool) {
	sub := &importer{file: file}
	root, err := parseYAML(file, data)
	if err != nil {
		var errs jobs.Errors
		if errors.As(err, &errs) {
			im.errs = append(im.errs, errs...)
		}
		return testDef{}, false
	}
	var td testDef
	m, ok := sub.mapping(root, "")
	if ok {
		for _, k := range m.entries {
			switch k.key {
			case "metadata":
				sub.mapping(k.v, k.path)
			case "params":
				td.params, _ = sub.params(k)
			case "install":
				sub.install(k, &td)
			case "run":
				td.steps, _ = sub.run(k)
			case "parse":
				sub.parse(k, &td)
			default:
				sub.unsupported(k, "not a LAVA test definition key; troupe reads metadata, params, install, run and parse")
			}
		}
		if _, has := m.get("run"); !has {
			sub.required(m, "run")
		}
	}
	im.errs = append(im.errs, sub.errs...)
	return td, len(sub.errs) == 0
}

func (im *importer) install(e entry, td *testDef) {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return
	}
	for _, k := range m.entries {
		switch {
		case k.key == "deps" || strings.HasPrefix(k.key, "deps-"):
			if deps, ok := im.strings(k); ok {
				td.deps = append(td.deps, deps...)
			}
		case k.key == "steps":
			if steps, ok := im.strings(k); ok {
				td.install = steps
			}
		case k.key == "keys" || k.key == "sources" || k.key == "git-repos" || k.key == "bzr-repos":
			im.unsupported(k, "not supported: troupe boards install nothing from the network; put what the test needs in the image")
		default:
			im.unsupported(k, "not a LAVA install key; troupe reads install.deps and install.steps")
		}
	}
}

func (im *importer) parse(e entry, td *testDef) {
	m, ok := im.mapping(e.v, e.path)
	if !ok {
		return
	}
	for _, k := range m.entries {
		switch k.key {
		case "pattern":
			s, ok := im.str(k.v, k.path)
			if !ok {
				continue
			}
			re, err := regexp.Compile(s)
			if err != nil {
				im.errorf(k.line, k.path, "not a regular expression troupe can use: %v", err)
				continue
			}
			if !slices.Contains(re.SubexpNames(), "test_case_id") || !slices.Contains(re.SubexpNames(), "result") {
				im.errorf(k.line, k.path, "needs the named groups (?P<test_case_id>...) and (?P<result>...)")
				continue
			}
			td.pattern = s
		case "fixupdict":
			fm, ok := im.mapping(k.v, k.path)
			if !ok {
				continue
			}
			for _, f := range fm.entries {
				if v, ok := im.str(f.v, f.path); ok {
					td.fixup = append(td.fixup, [2]string{f.key, v})
				}
			}
		default:
			im.unsupported(k, "not supported: troupe parses output with parse.pattern and parse.fixupdict")
		}
	}
	if _, has := m.get("pattern"); !has {
		im.required(m, "pattern")
	}
}

// repoScript builds the script of a from: git definition: the repository's
// files unpacked into the test's directory (its working directory, as in
// LAVA), the parameters, then install.steps and run.steps (see steps).
func repoScript(repo string, files []string, td testDef, params []param, testrun string) (string, error) {
	var b strings.Builder
	var total int64
	dirs := map[string]bool{}
	b.WriteString("TESTDIR=\"$(pwd)/repo\"\nmkdir -p \"$TESTDIR\" && cd \"$TESTDIR\"\n")
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(repo, filepath.FromSlash(f)))
		if err != nil {
			return "", fmt.Errorf("read %s: %w", f, err)
		}
		total += int64(len(data))
		if total > MaxDeliveredRepo {
			return "", fmt.Errorf("the repository has more than %d bytes of files; troupe types them through the board's console: use a mirror (--lava-mirror URL=DIR) holding what the test needs", MaxDeliveredRepo)
		}
		if d := path.Dir(f); d != "." && !dirs[d] {
			dirs[d] = true
			fmt.Fprintf(&b, "mkdir -p %s\n", quote(d))
		}
		mode := "644"
		if info, err := os.Stat(filepath.Join(repo, filepath.FromSlash(f))); err == nil && info.Mode()&0o111 != 0 {
			mode = "755"
		}
		fmt.Fprintf(&b, "base64 -d >%s <<'TROUPE_EOF'\n%s\nTROUPE_EOF\nchmod %s %s\n", quote(f), wrap(base64.StdEncoding.EncodeToString(data)), mode, quote(f))
	}
	fmt.Fprintf(&b, "export TESTRUN_ID=%s\n", quote(testrun))
	for _, p := range params {
		fmt.Fprintf(&b, "export %s=%s\n", p.name, quote(p.value))
	}
	if len(td.deps) > 0 {
		fmt.Fprintf(&b, "echo %s\n", quote("troupe: install.deps not installed (boards install nothing; the image must hold them): "+strings.Join(td.deps, " ")))
	}
	b.WriteString(steps(td.install, td.steps))
	return b.String(), nil
}

// pathToken is a relative path a file may name: words joined by '/'.
var pathToken = regexp.MustCompile(`[A-Za-z0-9_.+-]*(?:/[A-Za-z0-9_.+-]+)+`)

// maxScanned bounds the size of a file deliveredFiles reads for names.
const maxScanned = 256 << 10

// deliveredFiles picks the files of a repository's work tree dir that the
// definition def (a path in it) is delivered with: all of them if they fit
// in MaxDeliveredRepo; else, as a big repository such as Linaro's
// test-definitions needs, the definition's own directory and every file
// the delivered text files name by a relative path (from their own
// directory, the definition's, where its scripts run, or the repository's
// root: "../../lib/sh-test-lib"), transitively.
func deliveredFiles(dir, def string) ([]string, error) {
	all, err := RepoFiles(dir)
	if err != nil {
		return nil, err
	}
	sizes := make(map[string]int64, len(all))
	var total int64
	for _, f := range all {
		info, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		sizes[f] = info.Size()
		total += info.Size()
	}
	if total <= MaxDeliveredRepo {
		return all, nil
	}
	picked := map[string]bool{}
	var queue []string
	var size int64
	add := func(f string) {
		if _, ok := sizes[f]; ok && !picked[f] {
			picked[f] = true
			size += sizes[f]
			queue = append(queue, f)
		}
	}
	add(def)
	if d := path.Dir(def); d != "." {
		for _, f := range all {
			if strings.HasPrefix(f, d+"/") {
				add(f)
			}
		}
	}
	for len(queue) > 0 && size <= MaxDeliveredRepo {
		f := queue[0]
		queue = queue[1:]
		if sizes[f] > maxScanned {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		if bytes.IndexByte(data, 0) >= 0 {
			continue // a binary names nothing
		}
		for _, tok := range pathToken.FindAllString(string(data), -1) {
			tok = strings.TrimLeft(tok, "/")
			for _, base := range []string{path.Dir(f), path.Dir(def), "."} {
				if p := path.Join(base, tok); filepath.IsLocal(p) {
					add(p)
				}
			}
		}
	}
	if size > MaxDeliveredRepo {
		return nil, fmt.Errorf("the files %s needs (its directory and the files they name) are more than %d bytes; troupe types them through the board's console: put a smaller repository, or one holding what the test needs, in a mirror (--lava-mirror URL=DIR)", def, MaxDeliveredRepo)
	}
	out := make([]string, 0, len(picked))
	for _, f := range all {
		if picked[f] {
			out = append(out, f)
		}
	}
	return out, nil
}

func wrap(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76])
		b.WriteByte('\n')
		s = s[76:]
	}
	b.WriteString(s)
	return b.String()
}

func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Options are what importing needs beyond the job file: where test
// definition repositories and images are fetched to.
type Options struct {
	Repos     *Repos     // from: git test definitions; nil: DefaultOptions' cache
	Downloads *Downloads // http(s) images, compressed or checksummed images
	// Warn receives what the import accepted but wants said: duplicate keys,
	// install.deps not installed, device types stood in for. nil: dropped.
	Warn func(string)
	// Images is the images root: the images of the job must be under it,
	// imported image paths are made relative to it, and the download cache
	// is its CacheDir (Downloads.Dir is replaced). Local test definition
	// repositories must be under it too (or a mirror). "": the job file's
	// directory.
	Images string
}

// CacheDir is the directory, under the images root, that imported LAVA
// images are downloaded, checked and decompressed into.
const CacheDir = ".lava-cache"

// DefaultOptions caches test definition repositories under the user's
// cache directory (or the system's temporary directory), troupe/lava-git,
// and images under the images root (CacheDir), and
// fetches nothing over the network (what Import uses; a submitted job must
// not make troupe fetch from wherever it says). The command line turns
// fetching on.
func DefaultOptions() Options {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return Options{
		Repos:     &Repos{Dir: filepath.Join(base, "troupe", "lava-git"), Offline: true},
		Downloads: &Downloads{Offline: true},
	}
}

// gitDefinition imports a from: git test definition m (its name already
// read): the repository is fetched, the definition file read from it, and
// the test's script built (files, parameters, set -e, install.steps,
// run.steps) with its parse pattern.
func (im *importer) gitDefinition(repos *Repos, m *mapping, a jobs.Action, name string, warn func(string)) (jobs.Action, bool) {
	var repo, file, branch, revision string
	var repoLine int
	var overrides []param
	ok := true
	for _, k := range m.entries {
		switch k.key {
		case "from", "name":
		case "repository":
			if !isString(k.v) {
				im.typeError(k.v, k.path, "a string: the git URL of the repository")
				ok = false
				continue
			}
			repo, repoLine = k.v.Value, k.line
			if repo == "" {
				im.errorf(k.line, k.path, "must not be empty")
				ok = false
			}
		case "path":
			if s, good := im.str(k.v, k.path); good {
				file = s
				if s == "" || path.IsAbs(s) || slices.Contains(strings.Split(s, "/"), "..") {
					im.errorf(k.line, k.path, "%q must be a relative path inside the repository", s)
					ok = false
				}
			} else {
				ok = false
			}
		case "branch":
			branch, _ = im.str(k.v, k.path)
		case "revision":
			if k.v.Kind == yaml.ScalarNode && k.v.ShortTag() != "!!null" {
				revision = k.v.Value // commit ids may look like numbers
			} else {
				im.typeError(k.v, k.path, "a commit, tag or branch")
				ok = false
			}
		case "history", "shallow":
			if _, good := im.boolean(k); !good {
				ok = false
			}
		case "parameters", "params":
			p, good := im.params(k)
			overrides = append(overrides, p...)
			ok = ok && good
		case "lava-signal":
			im.unsupported(k, "not supported: troupe reads test results from the console (lava-signal: stdout is what it does)")
			ok = false
		default:
			im.unsupported(k, "not a key of a from: git test definition; troupe reads repository, path, name, branch, revision, history, shallow, parameters and params")
			ok = false
		}
	}
	if repo == "" || file == "" {
		for _, k := range []string{"repository", "path"} {
			if _, has := m.get(k); !has {
				im.required(m, k)
			}
		}
		return a, false
	}
	if !ok {
		return a, false
	}
	if repos == nil {
		im.errorf(repoLine, m.sub("repository"), "from: git needs a cache directory for test definition repositories")
		return a, false
	}
	co, err := repos.Fetch(context.Background(), repo, branch, revision)
	if err != nil {
		im.errorf(repoLine, m.sub("repository"), "%v", err)
		return a, false
	}
	full := filepath.Join(co.Dir, filepath.FromSlash(file))
	if real, err := filepath.EvalSymlinks(full); err != nil || !strings.HasPrefix(real, co.Dir+string(filepath.Separator)) {
		im.errorf(repoLine, m.sub("path"), "%q is not a file of %s at %s", file, repo, short(co.Commit))
		return a, false
	}
	data, err := readBounded(full, MaxDeliveredRepo)
	if err != nil {
		im.errorf(repoLine, m.sub("path"), "%s at %s: %v", repo, short(co.Commit), err)
		return a, false
	}
	td, good := im.testDefinition(repo+"@"+short(co.Commit)+":"+file, data)
	if !good {
		return a, false
	}
	if td.steps == nil {
		return a, false
	}
	files, err := deliveredFiles(co.Dir, file)
	if err == nil {
		a.Run, err = repoScript(co.Dir, files, td, merge(td.params, overrides), a.Name)
	}
	if err != nil {
		im.errorf(repoLine, m.sub("repository"), "%s at %s: %v", repo, short(co.Commit), err)
		return a, false
	}
	if len(td.deps) > 0 && warn != nil {
		warn(fmt.Sprintf("%s: test %s: install.deps (%s) are not installed: troupe boards install nothing, the image must hold them", im.file, a.Name, strings.Join(td.deps, " ")))
	}
	if !im.pattern(&a, td, repoLine, m.sub("repository")) {
		return a, false
	}
	return a, true
}

// pattern sets a's parse pattern and fixup from td.
func (im *importer) pattern(a *jobs.Action, td testDef, line int, key string) bool {
	a.Parse = td.pattern
	if len(td.fixup) == 0 {
		return true
	}
	a.Fixup = map[string]string{}
	for _, kv := range td.fixup {
		if !slices.Contains(jobs.Results, kv[1]) {
			im.errorf(line, key, "parse.fixupdict maps %q to %q; results are %s", kv[0], kv[1], strings.Join(jobs.Results, ", "))
			return false
		}
		a.Fixup[kv[0]] = kv[1]
	}
	return true
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

// readBounded reads a file of at most limit bytes.
func readBounded(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}
