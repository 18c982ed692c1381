package jobs

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/troupe-lab/troupe/jobs/tomlfile"
)

// imagePath checks the image path p of key k as a job file gives it, and
// resolves it against the job file's directory. Only the path's text is
// looked at: whether a refused path exists is never told.
func imagePath(t tomlfile.Table, k, file, p string) string {
	switch {
	case p == "":
		t.Errorf(k, "must not be empty")
	case strings.Contains(p, "://"):
		t.Errorf(k, "must be a file path (got %q)", p)
	case !localPath(p):
		t.Errorf(k, "must be a path inside the images root, without '..' (got %q); the images root is the job file's directory, or the server's --images directory", p)
	case strings.ContainsFunc(p, func(r rune) bool { return r == ',' || r < ' ' || r == 0x7f }):
		t.Errorf(k, "must not contain ',' or control characters (got %q)", p)
	default:
		return filepath.Join(filepath.Dir(file), p)
	}
	return ""
}

// localPath tells whether p is relative and has no ".." in it.
func localPath(p string) bool {
	if !filepath.IsLocal(p) {
		return false
	}
	for _, e := range strings.Split(filepath.ToSlash(p), "/") {
		if e == ".." {
			return false
		}
	}
	return true
}

// ConfineImages resolves the images of j (deploy image and images) under
// root, the images root: the job file's directory for troupe run, the
// server's --images directory for a submitted job. Each must be a file or
// directory inside root with symlinks followed; its path becomes the
// absolute path it resolves to. A missing path and one whose symlinks lead
// out of root get the same error, so the error tells nothing about what
// is outside root. The error, if any, is an Errors.
func (j *Job) ConfineImages(root string) error {
	var errs Errors
	var in *images
	for i := range j.Actions {
		a := &j.Actions[i]
		fields := []imageField{{"image", &a.Image}}
		var names, files []string // Images.Files, resolved in files
		if im := a.Images; im != nil {
			fields = append(fields, imageField{"images.kernel", &im.Kernel}, imageField{"images.initrd", &im.Initrd}, imageField{"images.rootfs", &im.Rootfs}, imageField{"images.dtb", &im.DTB})
			names = slices.Sorted(maps.Keys(im.Files))
			files = make([]string, len(names))
			for i, k := range names {
				files[i] = im.Files[k]
				fields = append(fields, imageField{"images.files." + k, &files[i]})
			}
		}
		for _, f := range fields {
			if *f.p == "" {
				continue
			}
			if in == nil {
				in = openImages(root)
				defer in.close()
			}
			rel := unresolve(j.File, *f.p)
			abs, ok := in.resolve(rel)
			if !ok {
				errs = append(errs, &Error{File: j.File, Line: a.Line, Key: fmt.Sprintf("action[%d].%s", a.Index, f.key),
					Msg: fmt.Sprintf("%q is not a file or directory in the images root", rel)})
				continue
			}
			*f.p = abs
		}
		for i, k := range names {
			a.Images.Files[k] = files[i]
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

type imageField struct {
	key string
	p   *string
}

// images is an opened images root; a root that cannot be opened has
// no images.
type images struct {
	root *os.Root // nil: none
	real string   // the root's absolute path, symlinks resolved
}

func openImages(root string) *images {
	real, err := filepath.EvalSymlinks(root)
	if err == nil {
		real, err = filepath.Abs(real)
	}
	if err != nil {
		return &images{}
	}
	r, err := os.OpenRoot(real)
	if err != nil {
		return &images{}
	}
	return &images{root: r, real: real}
}

func (im *images) close() {
	if im.root != nil {
		_ = im.root.Close()
	}
}

// resolve returns the absolute path rel resolves to if that is in the
// root: os.Root refuses symlinks that leave it, and the resolved path is
// checked again.
func (im *images) resolve(rel string) (string, bool) {
	if im.root == nil || !localPath(rel) {
		return "", false
	}
	if _, err := im.root.Stat(rel); err != nil {
		return "", false
	}
	abs, err := filepath.EvalSymlinks(filepath.Join(im.real, rel))
	if err != nil {
		return "", false
	}
	inside, err := filepath.Rel(im.real, abs)
	if err != nil || !localPath(inside) {
		return "", false
	}
	return abs, true
}
