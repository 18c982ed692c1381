package lava_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lava"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/runner"
)

// corpusRunTimeout bounds each corpus job's run: the jobs' own timeouts
// are the real labs' (up to hours).
const corpusRunTimeout = 3 * time.Minute

var checksumLine = regexp.MustCompile(`(?m)^\s*(md5sum|sha256sum|sha512sum):.*\n`)

// corpusRunExceptions are the validating corpus jobs that cannot complete
// on simulated boards, with the error their nodes end with.
var corpusRunExceptions = map[string]string{
	// The server role installs apache2 with apt before it sends
	// server_installed: a simulated board has no apt, the server's test
	// stops there (LAVA's set -e) and the client's lava-wait waits out the
	// job, as it would in LAVA.
	"doc-second-multinode-job.yaml": "(during test 'client-wait')",
	// The host's first step lists /root/.ssh, which a simulated board
	// (no ssh server, no keys authorized) lacks: its test stops there
	// (set -e) before lava-send lava_start, and the guests end saying
	// their host did not start them, as LAVA's would wait it out.
	// examples/lava-ssh-guests.yaml runs guests end to end (TestLAVASSHGuests).
	"doc-mustang-ssh-guest.yaml": "role host did not send lava_start",
}

// TestCorpusRuns: every corpus job that validates runs to completion on
// the built-in sim lab, its simulated boards standing in for the jobs'
// device types (images and git repositories from local mirrors): it
// ends complete, its tests passed or failed, not incomplete. The jobs'
// own test steps (ping, apt-get, ...) may fail on a sim board; a node
// that never gets to its tests is a failure of this test.
func TestCorpusRuns(t *testing.T) {
	files, err := filepath.Glob("testdata/corpus/*.yaml")
	require.NoError(t, err)
	sort.Strings(files)
	ran := 0
	for _, f := range files {
		name := filepath.Base(f)
		if corpusOutcome[name] != "" {
			continue
		}
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			// Mirrors of this job's own: two jobs name one URL with two
			// compressions (modules.tar.gz: gz and xz).
			opts := corpusMirrors(t, []string{f})
			base := opts.Images
			opts.Downloads.Defer = false // a run fetches (from the mirrors)
			opts.Warn = func(string) {}
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			// The mirrors hold placeholders: their checksums are not the
			// real images' (checksums are checked by TestDownloadsOnceWithChecksums).
			data = checksumLine.ReplaceAll(data, nil)
			// The images root is the job file's directory, as on the command line.
			job := filepath.Join(base, name)
			require.NoError(t, os.WriteFile(job, data, 0o644))
			j, err := lava.ImportWith(job, data, opts)
			require.NoError(t, err)
			// A job's own placeholder paths (__FQDN__/zImage): placeholder files.
			for _, a := range j.Actions {
				if a.Images == nil {
					continue
				}
				for _, p := range []string{a.Images.Kernel, a.Images.Initrd, a.Images.DTB, a.Images.Rootfs} {
					if _, err := os.Stat(p); p != "" && os.IsNotExist(err) && !strings.Contains(p, lava.CacheDir) {
						require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
						require.NoError(t, os.WriteFile(p, []byte("placeholder\n"), 0o644))
					}
				}
			}
			require.NoError(t, j.ConfineImages(base))
			if j.Timeout > corpusRunTimeout {
				j.Timeout = corpusRunTimeout
			}
			want, exception := corpusRunExceptions[name]
			if exception {
				j.Timeout = 20 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), corpusRunTimeout+time.Minute)
			defer cancel()
			res, err := runner.Run(ctx, j, nil, runner.Options{Out: filepath.Join(t.TempDir(), "out")})
			require.NoError(t, err)
			ran++
			for _, n := range res.Nodes {
				if exception && n.Status == report.StatusIncomplete {
					assert.Contains(t, n.Error, want, "%s: node %s", name, n.Name)
					continue
				}
				assert.NotEqual(t, report.StatusIncomplete, n.Status, "%s: node %s: %s", name, n.Name, n.Error)
			}
			if slices.ContainsFunc(j.Actions, func(a jobs.Action) bool { return a.Type == jobs.Test }) {
				assert.NotEmpty(t, res.Tests, "%s: tests ran", name)
			}
		})
	}
	assert.Equal(t, 20, ran)
}
