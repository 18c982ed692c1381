package lava

// Kernel modules into the nfsrootfs, as LAVA's extract-modules does: the
// modules tarball (lib/modules/...) is unpacked over the root
// filesystem. troupe serves an nfsrootfs as a tar over TFTP, so the
// modules' entries are appended to a copy of the rootfs tar (later
// entries win when it is unpacked).

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// WithModules returns the cache path of the rootfs tar (plain or gzip)
// with the entries of the modules tar (plain or gzip) appended, made
// once per pair of inputs (again when either changed). With d.Defer, the
// path only. The copy is bounded by d's size limit.
func (d *Downloads) WithModules(ctx context.Context, rootfs, modules string) (string, error) {
	if d.Dir == "" {
		return "", errors.New("modules: no download cache directory")
	}
	h := sha256.New()
	fmt.Fprintf(h, "modules\x00%s\x00%s", rootfs, modules)
	name := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(rootfs), ".gz"), ".tgz")
	if !strings.HasSuffix(name, ".tar") {
		name += ".tar"
	}
	final := filepath.Join(d.Dir, hex.EncodeToString(h.Sum(nil))[:32], name)
	if d.Defer {
		return final, nil
	}
	if fresh(final, rootfs, modules) {
		return final, nil
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return "", fmt.Errorf("modules: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(final), ".partial-")
	if err != nil {
		return "", fmt.Errorf("modules: %w", err)
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriter(tmp)
	lw := &limitWriter{w: bw, left: d.max()}
	tw := tar.NewWriter(lw)
	for _, in := range []string{rootfs, modules} {
		if err := copyTar(ctx, tw, in); err != nil {
			tmp.Close()
			return "", fmt.Errorf("modules: %s: %w", filepath.Base(in), err)
		}
	}
	err = tw.Close()
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		tmp.Close()
		return "", fmt.Errorf("modules: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("modules: %w", err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", fmt.Errorf("modules: %w", err)
	}
	return final, nil
}

// fresh reports whether out exists and is newer than every input.
func fresh(out string, in ...string) bool {
	o, err := os.Stat(out)
	if err != nil {
		return false
	}
	for _, p := range in {
		i, err := os.Stat(p)
		if err != nil || !i.ModTime().Before(o.ModTime()) {
			return false
		}
	}
	return true
}

// copyTar copies the entries of the tar (plain or gzip) at path to tw.
func copyTar(ctx context.Context, tw *tar.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if n == 0 {
				return errors.New("not a tar archive (no entries)")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("not a tar archive: %w", err)
		}
		n++
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// errTooLarge: a written file passed its size limit.
var errTooLarge = errors.New("larger than the download size limit")

// limitWriter refuses to write more than left bytes.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, errTooLarge
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}
