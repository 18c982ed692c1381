package lava

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Defaults of Repos.
const (
	DefaultMaxRepoBytes = 64 << 20
	DefaultGitTimeout   = 5 * time.Minute
)

// Mirror maps a URL prefix to a local directory: a repository URL that
// starts with Prefix is fetched from Dir followed by the rest of the URL.
type Mirror struct {
	Prefix string
	Dir    string
}

// ParseMirror reads a --lava-mirror value, URL=DIR.
func ParseMirror(s string) (Mirror, error) {
	prefix, dir, ok := strings.Cut(s, "=")
	if !ok || prefix == "" || dir == "" {
		return Mirror{}, fmt.Errorf("mirror %q: want URL=DIR", s)
	}
	return Mirror{Prefix: prefix, Dir: dir}, nil
}

// Repos fetches the git repositories of test definitions (from: git) with
// the git program into a cache keyed by URL and revision. Only the http,
// https, git and file transports are allowed (no ext::, no ssh commands);
// mirrors map URL prefixes to local directories for offline labs.
type Repos struct {
	Dir      string        // cache directory; created on first use
	Mirrors  []Mirror      // longest matching prefix wins
	MaxBytes int64         // checked-out size limit per repository; 0: DefaultMaxRepoBytes
	Timeout  time.Duration // per git command; 0: DefaultGitTimeout
	Offline  bool          // refuse network URLs without a mirror
	// Local is the directory local repositories (paths, file:// URLs) must
	// be under, symlinks followed; "": no local repository but a mirror's.
	Local string
}

// Checkout is a fetched repository at one commit.
type Checkout struct {
	Dir    string // the work tree
	Commit string // full commit id
}

var revisionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)

// source returns where to fetch url from: a mirror, a local path or url.
func (r *Repos) source(raw string) (string, error) {
	best := -1
	for i, m := range r.Mirrors {
		if strings.HasPrefix(raw, m.Prefix) && (best < 0 || len(m.Prefix) > len(r.Mirrors[best].Prefix)) {
			best = i
		}
	}
	if best >= 0 {
		m := r.Mirrors[best]
		rest := strings.TrimPrefix(raw, m.Prefix)
		if slices.Contains(strings.Split(filepath.ToSlash(rest), "/"), "..") {
			return "", fmt.Errorf("repository %q: '..' after the mirror's URL %q", raw, m.Prefix)
		}
		return filepath.Join(m.Dir, rest), nil
	}
	if !scheme.MatchString(raw) {
		if !filepath.IsAbs(raw) {
			return "", fmt.Errorf("repository %q: a local repository must be an absolute path or a file:// URL", raw)
		}
		return r.local(raw, filepath.Clean(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("repository %q: %w", raw, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return "", fmt.Errorf("repository %q: a file:// URL must name a local path", raw)
		}
		return r.local(raw, filepath.Clean(u.Path))
	case "http", "https", "git":
		if r.Offline {
			return "", fmt.Errorf("repository %q %w, and fetching is off here: map it to a local mirror (--lava-mirror URL=DIR)", raw, ErrOffline)
		}
		return raw, nil
	default:
		return "", fmt.Errorf("repository %q: scheme %q is not allowed; troupe fetches test definitions over http, https, git or from local paths and mirrors (--lava-mirror URL=DIR)", raw, u.Scheme)
	}
}

// local returns the local repository p (of URL raw) if it is under
// r.Local, symlinks followed: a job must not make troupe clone whatever
// path of the host it names. A path that does not exist and one outside
// get the same error.
func (r *Repos) local(raw, p string) (string, error) {
	if r.Local != "" {
		if in, ok := under(r.Local, p); ok {
			return in, nil
		}
	}
	return "", fmt.Errorf("repository %q: a local repository must be under the images root (%s) or fetched from a mirror (--lava-mirror URL=DIR); place it there or use its http(s) URL", raw, r.Local)
}

// under returns the real path of p if p exists and is inside dir, symlinks
// of both followed.
func under(dir, p string) (string, bool) {
	realDir, err := filepath.EvalSymlinks(dir)
	if err == nil {
		realDir, err = filepath.Abs(realDir)
	}
	if err != nil {
		return "", false
	}
	realP, err := filepath.EvalSymlinks(p)
	if err == nil {
		realP, err = filepath.Abs(realP)
	}
	if err != nil {
		return "", false
	}
	rel, err := filepath.Rel(realDir, realP)
	if err != nil || !filepath.IsLocal(rel) {
		return "", false
	}
	return realP, true
}

// gitConfig is what every git command troupe runs is configured with: a
// repository is hostile input. No hooks, no filters or fsmonitor a config
// could name, no submodules, and only the file, http(s) and git
// transports (never ext:: or ssh, whose URLs run commands).
var gitConfig = []string{
	"-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "submodule.recurse=false",
	"-c", "protocol.allow=never", "-c", "protocol.ext.allow=never", "-c", "protocol.ssh.allow=never",
	"-c", "protocol.file.allow=always", "-c", "protocol.http.allow=always", "-c", "protocol.https.allow=always",
	"-c", "protocol.git.allow=always", "-c", "http.followRedirects=initial",
}

// sizePoll is how often a running clone's size is checked.
const sizePoll = 100 * time.Millisecond

// git runs one git command in dir. If watch is set, the command is killed
// as soon as the files under watch add up to more than limit bytes: a
// hostile repository must not fill the disk before its size is known.
func (r *Repos) git(ctx context.Context, dir, watch string, limit int64, args ...string) (string, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultGitTimeout
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("took longer than %s", timeout))
	defer cancel()
	run, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	cmd := exec.CommandContext(run, "git", append(slices.Clone(gitConfig), args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_ALLOW_PROTOCOL=file:http:https:git", "GIT_PROTOCOL_FROM_USER=0", "LC_ALL=C")
	var out, stderr bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		if run.Err() != nil {
			err = context.Cause(run)
		}
		return "", fmt.Errorf("git %s: %w", args[0], err)
	}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		if watch == "" {
			return
		}
		tick := time.NewTicker(sizePoll)
		defer tick.Stop()
		for {
			select {
			case <-run.Done():
				return
			case <-tick.C:
				if n, err := treeSize(watch); err == nil && n > limit {
					stop(fmt.Errorf("%d bytes fetched and counting; test definition repositories are limited to %d", n, r.max()))
					return
				}
			}
		}
	}()
	err := cmd.Wait()
	killed := run.Err() != nil
	cause := context.Cause(run)
	stop(nil)
	<-watched
	if err == nil && watch != "" {
		// What the last poll did not see (a command quicker than sizePoll).
		if n, serr := treeSize(watch); serr == nil && n > limit {
			return "", fmt.Errorf("git %s: %d bytes fetched; test definition repositories are limited to %d", args[0], n, r.max())
		}
	}
	if err != nil {
		if killed {
			return "", fmt.Errorf("git %s: %w", args[0], cause)
		}
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 400 {
			msg = msg[:400] + "..."
		}
		return "", fmt.Errorf("git %s: %s: %w", args[0], msg, err)
	}
	return strings.TrimSpace(out.String()), nil
}

func cacheKey(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:])[:32]
}

// Fetch returns a work tree of repository url at revision (a commit, tag
// or branch name), or at the tip of branch, or of the default branch. A
// revision already in the cache is not fetched again.
func (r *Repos) Fetch(ctx context.Context, rawURL, branch, revision string) (Checkout, error) {
	for _, v := range []string{branch, revision} {
		if v != "" && (!revisionRE.MatchString(v) || strings.Contains(v, "..")) {
			return Checkout{}, fmt.Errorf("repository %s: invalid branch or revision %q", rawURL, v)
		}
	}
	src, err := r.source(rawURL)
	if err != nil {
		return Checkout{}, err
	}
	if r.Dir == "" {
		return Checkout{}, fmt.Errorf("repository %s: no cache directory for test definition repositories", rawURL)
	}
	if revision != "" {
		if c, ok := r.cached(rawURL, revision); ok {
			return c, nil
		}
	}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return Checkout{}, fmt.Errorf("repository cache: %w", err)
	}
	tmp, err := os.MkdirTemp(r.Dir, ".partial-")
	if err != nil {
		return Checkout{}, fmt.Errorf("repository cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	work := filepath.Join(tmp, "tree")
	// No template: nothing but what the repository holds is counted.
	args := []string{"clone", "--quiet", "--no-checkout", "--template="}
	if branch != "" {
		args = append(args, "--branch", branch)
	}
	// Only what the checkout needs is fetched: the tip alone when no
	// revision is named, else the history without file contents (the
	// checkout fetches the contents of its commit). Both need a
	// transport: a local path is fetched as a file:// URL.
	if !scheme.MatchString(src) && !strings.ContainsAny(src, "%# ?") {
		src = "file://" + src
	}
	if revision == "" {
		args = append(args, "--depth", "1")
	} else {
		args = append(args, "--filter=blob:none")
		if strings.HasPrefix(src, "file://") {
			// A local upload-pack reads no configuration of ours
			// (git clears GIT_CONFIG_PARAMETERS for it): this constant
			// command line lets it serve the filter.
			args = append(args, "--upload-pack=git -c uploadpack.allowFilter=true upload-pack")
		}
	}
	if _, err := r.git(ctx, tmp, tmp, r.max(), append(args, "--", src, work)...); err != nil {
		return Checkout{}, fmt.Errorf("fetch test definitions from %s: %w", rawURL, err)
	}
	target := "HEAD"
	if revision != "" {
		target = revision
	}
	commit, err := r.git(ctx, work, "", 0, "rev-parse", "--verify", "--end-of-options", target+"^{commit}")
	if err != nil {
		return Checkout{}, fmt.Errorf("repository %s: revision %q not found: %w", rawURL, target, err)
	}
	if c, ok := r.cached(rawURL, commit); ok {
		return c, nil
	}
	if _, err := r.git(ctx, work, tmp, 2*r.max(), "checkout", "--quiet", "--detach", commit); err != nil {
		return Checkout{}, fmt.Errorf("repository %s: checkout %s: %w", rawURL, commit, err)
	}
	if err := os.RemoveAll(filepath.Join(work, ".git")); err != nil {
		return Checkout{}, fmt.Errorf("repository cache: %w", err)
	}
	if n, err := treeSize(work); err != nil {
		return Checkout{}, fmt.Errorf("repository %s: %w", rawURL, err)
	} else if n > r.max() {
		return Checkout{}, fmt.Errorf("repository %s: %d bytes of files at %s; test definition repositories are limited to %d", rawURL, n, commit[:12], r.max())
	}
	entry := filepath.Join(r.Dir, cacheKey(rawURL, commit))
	if err := os.WriteFile(entry+".commit", []byte(commit+"\n"), 0o644); err != nil {
		return Checkout{}, fmt.Errorf("repository cache: %w", err)
	}
	if err := os.Rename(work, entry); err != nil {
		if c, ok := r.cached(rawURL, commit); ok {
			return c, nil // another import completed the same entry
		}
		return Checkout{}, fmt.Errorf("repository cache: %w", err)
	}
	if revision != "" && revision != commit {
		_ = os.Symlink(filepath.Base(entry), filepath.Join(r.Dir, cacheKey(rawURL, revision)))
	}
	return Checkout{Dir: entry, Commit: commit}, nil
}

func (r *Repos) max() int64 {
	if r.MaxBytes > 0 {
		return r.MaxBytes
	}
	return DefaultMaxRepoBytes
}

// cached finds the work tree of url at revision in the cache.
func (r *Repos) cached(rawURL, revision string) (Checkout, bool) {
	dir, err := filepath.EvalSymlinks(filepath.Join(r.Dir, cacheKey(rawURL, revision)))
	if err != nil {
		return Checkout{}, false
	}
	b, err := os.ReadFile(dir + ".commit")
	if err != nil {
		return Checkout{}, false
	}
	return Checkout{Dir: dir, Commit: strings.TrimSpace(string(b))}, true
}

// treeSize adds up the sizes of the regular files under dir.
func treeSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// RepoFiles lists the regular files of a work tree, relative and sorted;
// symbolic links pointing inside the tree are listed with their targets'
// contents, others are left out.
func RepoFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}
