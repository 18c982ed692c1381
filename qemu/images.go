package qemu

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/troupe-lab/troupe/jobs"
)

//go:embed images/mkinitramfs.sh
var mkinitramfs []byte

// buildMu makes one build at a time in this process; other processes are
// kept apart by building in a directory of their own and renaming it.
var buildMu sync.Mutex

// DefaultImages returns the default x86_64 images of QEMU boards: the
// newest installed Debian kernel (/boot/vmlinuz-*) and a busybox initramfs
// built for it by images/mkinitramfs.sh. They are built once per kernel and
// script version into cacheDir (""): the user's cache directory).
func DefaultImages(ctx context.Context, cacheDir string) (jobs.Images, error) {
	kernels, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(kernels) == 0 {
		return jobs.Images{}, errors.New("default images: no kernel in /boot: install linux-image-cloud-amd64 (or deploy images = {kernel = ...})")
	}
	sort.Strings(kernels)
	kver := strings.TrimPrefix(kernels[len(kernels)-1], "/boot/vmlinuz-")
	if cacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		cacheDir = filepath.Join(base, "troupe", "qemu")
	}
	sum := sha256.Sum256(mkinitramfs)
	dir := filepath.Join(cacheDir, kver+"-"+hex.EncodeToString(sum[:6]))
	im := jobs.Images{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd")}
	buildMu.Lock()
	defer buildMu.Unlock()
	if _, err := os.Stat(filepath.Join(dir, "version")); err == nil {
		return im, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return jobs.Images{}, fmt.Errorf("default images: %w", err)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".build-")
	if err != nil {
		return jobs.Images{}, fmt.Errorf("default images: %w", err)
	}
	defer os.RemoveAll(tmp)
	script := filepath.Join(tmp, "mkinitramfs.sh")
	if err := os.WriteFile(script, mkinitramfs, 0o755); err != nil {
		return jobs.Images{}, fmt.Errorf("default images: %w", err)
	}
	out := filepath.Join(tmp, "out")
	cmd := exec.CommandContext(ctx, "/bin/sh", script, out, kver)
	if b, err := cmd.CombinedOutput(); err != nil {
		return jobs.Images{}, fmt.Errorf("default images: mkinitramfs.sh: %w: %s", err, strings.TrimSpace(string(b)))
	}
	if err := os.Rename(out, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, "version")); statErr != nil {
			return jobs.Images{}, fmt.Errorf("default images: %w", err)
		}
	}
	return im, nil
}
