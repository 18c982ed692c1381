package lava_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lava"
)

// corpusOutcome is what importing each corpus job gives: "" if it
// validates, else a part of its one error (a whole-job refusal is one
// line).
//
// Validation fetches no images (Downloads.Defer): their checksums and
// compression are checked when a run fetches them
// (TestDownloadsOnceWithChecksums).
var corpusOutcome = map[string]string{
	"dispatcher-bbb-ssh-guest.yaml":                  "connection: " + lava.WhySSHGuest,
	"dispatcher-docker-test-multinode.yaml":          "actions[0].test.docker: " + lava.WhyDockerTest,
	"dispatcher-jlink-multiple-flash-multinode.yaml": "",
	"dispatcher-kvm-multinode-client.yaml":           "",
	"doc-first-multinode-job.yaml":                   "",
	"doc-inline-test-definition-example.yaml":        "",
	"doc-mustang-ssh-guest.yaml":                     "roles.guest.connection: " + lava.WhySSHGuest,
	"doc-qemu-aarch64.yaml":                          "",
	"doc-qemu-amd64-standard-stretch.yaml":           "",
	"doc-qemu-kernel-standard-sid.yaml":              "",
	"doc-qemu-pipeline-first-job.yaml":               "",
	"doc-qemu-stretch-params.yaml":                   "",
	"doc-qemu-vexpress-a9.yaml":                      "",
	"doc-second-multinode-job.yaml":                  "",
	"doc-standard-armmp-nfs-bbb.yaml":                "",
	"doc-standard-armmp-ramdisk-bbb.yaml":            "",
	"scheduler-bbb-bbb-group.yaml":                   "",
	"scheduler-bbb-qemu-multinode.yaml":              "",
	"scheduler-kvm-multinode-client.yaml":            "",
	"scheduler-kvm-multinode-server.yaml":            "",
	"scheduler-kvm-multinode.yaml":                   "",
	"scheduler-mustang-ssh-multinode.yaml":           "roles.guest.connection: " + lava.WhySSHGuest,
	"scheduler-qemu-ssh-guest.yaml":                  "roles.guest.connection: " + lava.WhySSHGuest,
	// A sub-job whose test has no boot before it: LAVA's own sample for
	// its scheduler's unit tests, not a job either runs.
	"scheduler-qemu-ssh-parent.yaml":   `test "ssh-inline" runs on role "host" before any boot action of that role`,
	"scheduler-secrets-multinode.yaml": "",
}

// corpusMirrors builds, for the corpus, local git repositories holding the
// test definitions its jobs name and a directory of placeholder images for
// its image URLs (compressed as the jobs say), and returns the options
// that map the jobs' URLs to them: nothing goes to the network.
func corpusMirrors(t *testing.T, files []string) lava.Options {
	t.Helper()
	base := t.TempDir()
	gitDir, imgDir := filepath.Join(base, "git"), filepath.Join(base, "images")
	repos := map[string]map[string]string{} // repo path -> definition files
	var images [][2]string                  // url, compression
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		var doc yaml.Node
		require.NoError(t, yaml.Unmarshal(data, &doc), f)
		walkMappings(&doc, func(m map[string]*yaml.Node) {
			if r, ok := m["repository"]; ok && r.Kind == yaml.ScalarNode && m["from"] != nil && m["from"].Value == "git" && m["path"] != nil {
				rp := repoPath(r.Value)
				if repos[rp] == nil {
					repos[rp] = map[string]string{}
				}
				repos[rp][m["path"].Value] = "metadata: {name: placeholder, format: Lava-Test Test Definition 1.0}\n" +
					"params: {DEFAULT: 'x'}\n" +
					"run:\n  steps:\n  - lava-test-case placeholder --result pass\n"
			}
			if u, ok := m["url"]; ok && u.Kind == yaml.ScalarNode && strings.Contains(u.Value, "://") {
				c := ""
				if m["compression"] != nil {
					c = m["compression"].Value
				}
				images = append(images, [2]string{u.Value, c})
			}
			// The short form: the URL alone.
			for _, k := range []string{"kernel", "ramdisk", "initrd", "dtb", "rootfs"} {
				if u, ok := m[k]; ok && u.Kind == yaml.ScalarNode && strings.Contains(u.Value, "://") {
					images = append(images, [2]string{u.Value, ""})
				}
			}
		})
	}
	for rp, defs := range repos {
		files := map[string]string{"README": "placeholder repository for the corpus test\n"}
		for p, body := range defs {
			files[p] = body
		}
		gitRepo(t, filepath.Join(gitDir, rp), files)
	}
	for _, im := range images {
		p := filepath.Join(imgDir, strings.SplitN(im[0], "://", 2)[1])
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		body := []byte("placeholder image\n")
		if strings.Contains(im[0], ".tar") || strings.HasSuffix(im[0], ".tgz") {
			// A rootfs or modules tarball: a tar (modules unpack over an nfsrootfs).
			body = tarFile(t, false, "placeholder")
		}
		if im[1] != "" && im[1] != "none" {
			body = compress(t, im[1], body)
		}
		require.NoError(t, os.WriteFile(p, body, 0o644))
	}
	var repoMirrors, imageMirrors []lava.Mirror
	for _, scheme := range []string{"http://", "https://", "git://"} {
		repoMirrors = append(repoMirrors, lava.Mirror{Prefix: scheme, Dir: gitDir})
		imageMirrors = append(imageMirrors, lava.Mirror{Prefix: scheme, Dir: imgDir})
	}
	// The LAVA worker's files (file:// URLs), as a lab maps them.
	imageMirrors = append(imageMirrors, lava.Mirror{Prefix: "file://", Dir: imgDir})
	return lava.Options{
		Repos:     &lava.Repos{Dir: filepath.Join(base, "cache-git"), Mirrors: repoMirrors, Offline: true},
		Downloads: &lava.Downloads{Mirrors: imageMirrors, Offline: true, Defer: true}, // troupe validate
		Images:    base,                                                               // the download cache: base/.lava-cache
	}
}

// repoPath is where a repository URL's mirror lives: host and path.
func repoPath(u string) string {
	return strings.SplitN(u, "://", 2)[1]
}

func walkMappings(n *yaml.Node, f func(map[string]*yaml.Node)) {
	if n.Kind == yaml.MappingNode {
		m := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = n.Content[i+1]
		}
		f(m)
	}
	for _, c := range n.Content {
		walkMappings(c, f)
	}
}

// TestCorpus imports every job of the corpus (25 real public LAVA jobs,
// testdata/corpus/SOURCES.md) with mirrors standing in for the network,
// asserts each one's outcome and reports the share that validates.
func TestCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/corpus/*.yaml")
	require.NoError(t, err)
	require.Len(t, files, 25)
	opts := corpusMirrors(t, files)
	var warnings []string
	opts.Warn = func(s string) { warnings = append(warnings, s) }
	valid := 0
	var report bytes.Buffer
	sort.Strings(files)
	for _, f := range files {
		name := filepath.Base(f)
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		j, err := lava.ImportWith(f, data, opts)
		first := ""
		if err != nil {
			var es jobs.Errors
			require.ErrorAs(t, err, &es, name)
			first = es[0].Error()
		} else {
			valid++
			require.NotEmpty(t, j.Actions, name)
		}
		want, known := corpusOutcome[name]
		if assert.True(t, known, "%s: no expected outcome (got %q)", name, first) {
			if want == "" {
				assert.NoError(t, err, name)
			} else {
				assert.Contains(t, first, want, name)
			}
		}
		var es jobs.Errors
		if errors.As(err, &es) && strings.Contains(first, "not supported") {
			assert.Len(t, es, 1, "%s: a refusal is one line:\n%v", name, err)
		}
		status := "valid"
		if first != "" {
			status = first
		}
		report.WriteString(name + ": " + status + "\n")
	}
	t.Logf("corpus: %d of %d validate\n%s", valid, len(files), report.String())
	assert.GreaterOrEqual(t, valid, 19, "no regression below today's share")
}
