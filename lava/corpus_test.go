package lava_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
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
	"dispatcher-bbb-ssh-guest.yaml":                  "connection: " + lava.WhyGuestSubJob,
	"dispatcher-docker-test-multinode.yaml":          "actions[0].test.docker: " + lava.WhyDockerTest,
	"dispatcher-jlink-multiple-flash-multinode.yaml": "",
	"dispatcher-kvm-multinode-client.yaml":           "",
	"doc-first-multinode-job.yaml":                   "",
	"doc-inline-test-definition-example.yaml":        "",
	"doc-mustang-ssh-guest.yaml":                     "",
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
	// LAVA's nfsrootfs prefix (a directory inside the tarball) is a
	// deploy key troupe does not read yet; its ssh guest role imports.
	"scheduler-mustang-ssh-multinode.yaml": "actions[0].deploy.nfsrootfs.prefix: not a key of a LAVA image",
	// A prototype: its guests never wait for lava_start (no request),
	// its deploy's protocols are no lava-multinode list, and its host has
	// no boot.
	"scheduler-qemu-ssh-guest.yaml": "roles.guest.request: is required: troupe starts a guest role once its host role has sent lava_start",
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
	assert.GreaterOrEqual(t, valid, 20, "no regression below today's share")
}

// TestCorpusSSHGuest asserts how LAVA's documented ssh guest job maps:
// the guest role is a guest of the host role (no board, no device type),
// its deploy waits for the host's address message, its boot takes the
// address from it, and the scheduler places the host alone.
func TestCorpusSSHGuest(t *testing.T) {
	f := "testdata/corpus/doc-mustang-ssh-guest.yaml"
	data, err := os.ReadFile(f)
	require.NoError(t, err)
	j, err := lava.ImportWith(f, data, corpusMirrors(t, []string{f}))
	require.NoError(t, err)
	require.Len(t, j.Roles, 2)
	guest, host := j.Roles[0], j.Roles[1]
	assert.Equal(t, jobs.Role{Name: "guest", Count: 3, Timeout: 15 * time.Minute, Host: "host"}, guest)
	assert.Equal(t, "mustang", host.DeviceType)
	assert.False(t, host.Guest())
	var deploy, boot *jobs.Action
	for i, a := range j.ActionsFor("guest") {
		switch a.Type {
		case jobs.Deploy:
			deploy = &j.ActionsFor("guest")[i]
		case jobs.Boot:
			boot = &j.ActionsFor("guest")[i]
		}
	}
	require.NotNil(t, deploy)
	require.NotNil(t, boot)
	assert.Equal(t, []jobs.Request{{Kind: "wait", ID: "ipv4"}}, deploy.Before)
	assert.Empty(t, deploy.Image)
	assert.Nil(t, deploy.Images)
	assert.Equal(t, &jobs.Address{Message: "ipv4", Key: "ipaddr"}, boot.Address)
	sj := lab.SchedulerJob("1", j, time.Time{})
	require.Len(t, sj.Roles, 1, "a guest takes no board")
	assert.Equal(t, "host", sj.Roles[0].Name)
	assert.Len(t, lab.ForJob(j).Boards, 1)
}
