package main

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/jobs/tomlfile"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/lava"
)

// mirrorFlag is --lava-mirror URL=DIR, repeatable: test definition
// repositories whose URL starts with URL are fetched from DIR instead.
type mirrorFlag []lava.Mirror

func (m *mirrorFlag) String() string {
	parts := make([]string, len(*m))
	for i, x := range *m {
		parts[i] = x.Prefix + "=" + x.Dir
	}
	return strings.Join(parts, ",")
}

func (m *mirrorFlag) Set(s string) error {
	x, err := lava.ParseMirror(s)
	if err != nil {
		return err
	}
	*m = append(*m, x)
	return nil
}

// standInNotice says, once, which device types of js the built-in sim lab
// stands in for with simulated boards (a run without --lab).
func standInNotice(w io.Writer, js []*jobs.Job) {
	var types []string
	for _, j := range js {
		for _, r := range j.Roles {
			if !r.Guest() && r.DeviceType != lab.Sim && !slices.Contains(types, r.DeviceType) {
				types = append(types, r.DeviceType)
			}
		}
	}
	if len(types) == 0 {
		return
	}
	slices.Sort(types)
	noun := "device type"
	if len(types) > 1 {
		noun = "device types"
	}
	fmt.Fprintf(w, "troupe: no --lab: %s %s stood in for by simulated boards of the built-in sim lab (they boot their own shell, not the job's kernel or disk images)\n", noun, strings.Join(types, ", "))
}

// lavaFlags adds --lava-mirror to fs; the function it returns gives the
// options LAVA job definitions are imported with on the command line:
// test definition repositories and images are fetched (over the network
// unless a mirror maps them), into the user's cache; warnings go to
// stderr.
func lavaFlags(fs *flag.FlagSet, stderr io.Writer) func() lava.Options {
	var mirrors mirrorFlag
	fs.Var(&mirrors, "lava-mirror", "URL=DIR: fetch LAVA test definition repositories and images whose URL starts with URL from DIR (repeatable)")
	return func() lava.Options {
		opts := lava.DefaultOptions()
		opts.Repos.Offline, opts.Downloads.Offline = false, false
		opts.Repos.Mirrors = mirrors
		opts.Downloads.Mirrors = mirrors
		opts.Warn = func(s string) { fmt.Fprintln(stderr, s) }
		return opts
	}
}

// labMirrors are the LAVA mirrors of l (nil: none).
func labMirrors(l *lab.Lab) []lava.Mirror {
	if l == nil {
		return nil
	}
	var ms []lava.Mirror
	for _, m := range l.LAVAMirrors {
		ms = append(ms, lava.Mirror{Prefix: m.URL, Dir: m.Dir})
	}
	return ms
}

// withLabMirrors adds the LAVA mirrors of l (nil: none) after the
// --lava-mirror ones, which win a tie.
func withLabMirrors(opts lava.Options, l *lab.Lab) lava.Options {
	ms := labMirrors(l)
	if len(ms) == 0 {
		return opts
	}
	if opts.Repos != nil {
		r := *opts.Repos
		r.Mirrors = append(slices.Clone(r.Mirrors), ms...)
		opts.Repos = &r
	}
	if opts.Downloads != nil {
		d := *opts.Downloads
		d.Mirrors = append(slices.Clone(d.Mirrors), ms...)
		opts.Downloads = &d
	}
	return opts
}

// unfetched lists the images of j in the LAVA download cache that are
// not there yet, sorted.
func unfetched(j *jobs.Job) []string {
	var out []string
	add := func(p string) {
		if p == "" || !slices.Contains(strings.Split(filepath.ToSlash(p), "/"), lava.CacheDir) {
			return
		}
		if _, err := os.Stat(p); err != nil && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, a := range j.Actions {
		add(a.Image)
		if im := a.Images; im != nil {
			for _, p := range []string{im.Kernel, im.Initrd, im.DTB, im.Rootfs} {
				add(p)
			}
			for _, k := range slices.Sorted(maps.Keys(im.Files)) {
				add(im.Files[k])
			}
		}
	}
	slices.Sort(out)
	return out
}

// loadLAVA reads and imports the LAVA job definition at path.
func loadLAVA(path string, opts lava.Options) (*jobs.Job, error) {
	data, err := tomlfile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load LAVA job: %w", err)
	}
	return lava.ImportWith(path, data, opts)
}

// confineImages confines the images of j under root (jobs.Job.ConfineImages).
// Where the LAVA import deferred fetching (validation), the images it
// will fetch into the cache are not there yet: the others are checked.
func confineImages(j *jobs.Job, root string, opts lava.Options) error {
	if opts.Downloads == nil || !opts.Downloads.Defer {
		return j.ConfineImages(root)
	}
	c := *j
	c.Actions = slices.Clone(j.Actions)
	cached := func(p string) string {
		if slices.Contains(strings.Split(filepath.ToSlash(p), "/"), lava.CacheDir) {
			return ""
		}
		return p
	}
	for i := range c.Actions {
		a := &c.Actions[i]
		a.Image = cached(a.Image)
		if a.Images != nil {
			im := *a.Images
			im.Kernel, im.Initrd, im.Rootfs, im.DTB = cached(im.Kernel), cached(im.Initrd), cached(im.Rootfs), cached(im.DTB)
			im.Files = maps.Clone(im.Files)
			for k, p := range im.Files {
				im.Files[k] = cached(p)
			}
			a.Images = &im
		}
	}
	return c.ConfineImages(root)
}
