package qemu

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/troupe-lab/troupe/jobs"
)

//go:embed images/mkinitramfs.sh
var mkinitramfs []byte

// buildMu makes one build at a time in this process; other processes are
// kept apart by building in a directory of their own and renaming it.
var buildMu sync.Mutex

// Arm64Dir is where qemu/images/fetch-arm64.sh puts Debian's arm64 kernel
// and busybox for the default aarch64 images: $TROUPE_ARM64_DIR, else
// <user cache dir>/troupe/arm64 (the directory `make deps` fetches into).
func Arm64Dir() string {
	if d := os.Getenv("TROUPE_ARM64_DIR"); d != "" {
		return d
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "troupe", "arm64")
}

// DefaultImages returns the default images of QEMU boards of arch: a
// Debian kernel and a busybox initramfs built for it by
// images/mkinitramfs.sh, with tmpFiles (paths relative to the guest's /tmp,
// where its init copies them at boot: the test shell's helpers, so that
// nothing is typed for them) in it. For x86_64 the kernel is the newest
// installed one (/boot/vmlinuz-*); for aarch64 it is the newest one that
// images/fetch-arm64.sh extracted into Arm64Dir()/root, with the arm64
// busybox from there. They are built once per kernel, packages, script
// version and files into cacheDir ("": the user's cache directory).
func DefaultImages(ctx context.Context, arch, cacheDir string, tmpFiles map[string][]byte) (jobs.Images, error) {
	sysroot, key := "/", mkinitramfs
	switch arch {
	case "x86_64":
	case "aarch64":
		dir := Arm64Dir()
		sysroot = filepath.Join(dir, "root")
		pkgs, err := os.ReadFile(filepath.Join(dir, "packages"))
		if err != nil {
			return jobs.Images{}, fmt.Errorf("default aarch64 images: no arm64 kernel and busybox in %s: run make deps (or sh qemu/images/fetch-arm64.sh %s), or deploy images = {kernel = ...}", dir, dir)
		}
		key = append(append([]byte{}, mkinitramfs...), pkgs...)
	default:
		return jobs.Images{}, fmt.Errorf("default images: no default images for %s", arch)
	}
	names := slices.Sorted(maps.Keys(tmpFiles))
	for _, n := range names {
		if !filepath.IsLocal(n) {
			return jobs.Images{}, fmt.Errorf("default %s images: file %q is not a relative path", arch, n)
		}
		key = fmt.Appendf(key, "\n%s %d\n", n, len(tmpFiles[n]))
		key = append(key, tmpFiles[n]...)
	}
	kernels, _ := filepath.Glob(filepath.Join(sysroot, "boot", "vmlinuz-*"))
	if len(kernels) == 0 {
		if sysroot != "/" {
			return jobs.Images{}, fmt.Errorf("default aarch64 images: no kernel in %s/boot: run make deps (or sh qemu/images/fetch-arm64.sh -u %s)", sysroot, filepath.Dir(sysroot))
		}
		return jobs.Images{}, errors.New("default images: no kernel in /boot: install linux-image-cloud-amd64 (or deploy images = {kernel = ...})")
	}
	sort.Strings(kernels)
	kver := strings.TrimPrefix(filepath.Base(kernels[len(kernels)-1]), "vmlinuz-")
	if cacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		cacheDir = filepath.Join(base, "troupe", "qemu")
	}
	sum := sha256.Sum256(key)
	dir := filepath.Join(cacheDir, kver+"-"+hex.EncodeToString(sum[:6]))
	im := jobs.Images{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd")}
	buildMu.Lock()
	defer buildMu.Unlock()
	stamp := filepath.Join(dir, "version")
	if fi, err := os.Stat(stamp); err == nil {
		// The version file's time is when the images were last used
		// (pruneImages), brought forward at most hourly.
		if now := time.Now(); now.Sub(fi.ModTime()) > time.Hour {
			_ = os.Chtimes(stamp, now, now)
		}
		return im, nil
	}
	// Another troupe version's (or kernel's) images unused for a while go
	// first: each is ~15 MB, and nothing else removes them.
	pruneImages(cacheDir, time.Now(), imagesUnusedFor)
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return jobs.Images{}, fmt.Errorf("default %s images: %w", arch, err)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".build-")
	if err != nil {
		return jobs.Images{}, fmt.Errorf("default %s images: %w", arch, err)
	}
	defer os.RemoveAll(tmp)
	script := filepath.Join(tmp, "mkinitramfs.sh")
	if err := os.WriteFile(script, mkinitramfs, 0o755); err != nil {
		return jobs.Images{}, fmt.Errorf("default %s images: %w", arch, err)
	}
	out := filepath.Join(tmp, "out")
	args := []string{script}
	if sysroot != "/" {
		args = append(args, "-r", sysroot)
	}
	if len(names) > 0 {
		files := filepath.Join(tmp, "files")
		for _, n := range names {
			p := filepath.Join(files, n)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return jobs.Images{}, fmt.Errorf("default %s images: %w", arch, err)
			}
			if err := os.WriteFile(p, tmpFiles[n], 0o755); err != nil {
				return jobs.Images{}, fmt.Errorf("default %s images: %w", arch, err)
			}
		}
		args = append(args, "-t", files)
	}
	args = append(args, out, kver)
	cmd := exec.CommandContext(ctx, "/bin/sh", args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return jobs.Images{}, fmt.Errorf("default %s images: mkinitramfs.sh: %w: %s", arch, err, strings.TrimSpace(string(b)))
	}
	// Readable by everyone whatever the umask: a confined QEMU (the
	// sandbox user) opens them (confine.go).
	for _, f := range []string{"vmlinuz", "initrd"} {
		if err := os.Chmod(filepath.Join(out, f), 0o644); err != nil {
			return jobs.Images{}, fmt.Errorf("default %s images: %w", arch, err)
		}
	}
	if err := os.Rename(out, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, "version")); statErr != nil {
			return jobs.Images{}, fmt.Errorf("default %s images: %w", arch, err)
		}
	}
	return im, nil
}

// imagesUnusedFor is how long default images (of another troupe version,
// kernel or set of helpers) stay in the cache unused before a build
// removes them.
const imagesUnusedFor = 14 * 24 * time.Hour

// pruneImages removes from cacheDir the default images not used since
// maxAge before now (their version file's time), and builds left behind
// (.build-*) older than that. It removes only what has the shape of either:
// the cache directory may be shared.
func pruneImages(cacheDir string, now time.Time, maxAge time.Duration) {
	entries, err := os.ReadDir(cacheDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(cacheDir, e.Name())
		stamp := filepath.Join(p, "version")
		if strings.HasPrefix(e.Name(), ".build-") {
			stamp = p
		}
		fi, err := os.Stat(stamp)
		if err != nil || now.Sub(fi.ModTime()) <= maxAge {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			slog.Warn("qemu: remove unused default images", "dir", p, "err", err)
		}
	}
}
