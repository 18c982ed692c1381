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
//   - deploy → a deploy action; images.rootfs.url, a path relative to the
//     images root (Options.Images: the job file's directory, or the
//     server's --images directory) or an http(s) URL (or a file:// URL a
//     mirror maps) downloaded into the root's CacheDir, becomes the image;
//     a kernel, initrd (ramdisk), dtb and rootfs become images, and
//     nfsrootfs, modules, dtbo and other named images (a flashing
//     method's) images.files. Validating (Downloads.Defer) names the
//     cache path and fetches nothing; a run fetches and checks. Absolute
//     paths and '..' are refused. to and os are accepted.
//   - boot → a boot action: commands (a name) picks the board's command
//     set, auto_login sets its login, failure_retry (any action) its
//     retries; method, prompts and media are accepted (troupe's boot
//     finds the shell prompt itself).
//   - context (job and role) and secrets → the job's Context (the boards'
//     boot templates) and Secrets (the tests' environment, masked in logs).
//   - A sub-job (protocols.lava-multinode.role) → a job of that one role.
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
	"fmt"
	"path/filepath"
	"sort"
	"strings"

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
	return ImportWith(file, data, DefaultOptions())
}

// ImportWith is Import with the caches of test definition repositories
// and images, and a receiver of warnings, given.
func ImportWith(file string, data []byte, opts Options) (*jobs.Job, error) {
	root, err := parseBounded(file, data)
	if err != nil {
		return nil, err
	}
	if opts.Images == "" {
		opts.Images = filepath.Dir(file)
	}
	if opts.Downloads != nil {
		d := *opts.Downloads
		d.Dir = filepath.Join(opts.Images, CacheDir, "images")
		opts.Downloads = &d
	}
	if opts.Repos != nil {
		r := *opts.Repos
		r.Local = opts.Images
		opts.Repos = &r
	}
	im := &importer{file: file, lavaRoles: map[string]string{}, guests: map[string]bool{}, tests: map[string]bool{}, opts: opts, perType: map[jobs.ActionType]int64{}}
	j := im.job(root)
	if im.refusal != nil {
		return nil, jobs.Errors{im.refusal}
	}
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

// parseBounded checks data's bounds, parses it and checks what its aliases
// expand to, before anything reads the tree.
func parseBounded(file string, data []byte) (*yaml.Node, error) {
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
	return root, nil
}
