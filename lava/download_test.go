package lava_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5" //nolint:gosec // LAVA's md5sum key
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lava"
)

func sum256(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
func sumMD5(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) } //nolint:gosec

// compress compresses data with the program (xz, zstd, bzip2) or gzip.
func compress(t *testing.T, kind string, data []byte) []byte {
	t.Helper()
	if kind == "gz" {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, err := w.Write(data)
		require.NoError(t, err)
		require.NoError(t, w.Close())
		return b.Bytes()
	}
	prog := map[string]string{"bz2": "bzip2", "xz": "xz", "zstd": "zstd"}[kind]
	cmd := exec.Command(prog, "-c")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	require.NoError(t, err, "the %s program is needed (Makefile APT_PKGS)", prog)
	return out
}

// imageServer serves files on loopback and counts the requests.
func imageServer(t *testing.T, files map[string][]byte) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestDownloadsOnceWithChecksums(t *testing.T) {
	kernel := bytes.Repeat([]byte("vmlinuz "), 1000)
	srv, hits := imageServer(t, map[string][]byte{"/k/vmlinuz": kernel})
	d := &lava.Downloads{Dir: t.TempDir()}
	a := lava.Artifact{URL: srv.URL + "/k/vmlinuz", Checksums: map[string]string{"sha256sum": sum256(kernel), "md5sum": sumMD5(kernel)}}
	p, err := d.Get(context.Background(), a)
	require.NoError(t, err)
	got, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, kernel, got)
	assert.Equal(t, "vmlinuz", filepath.Base(p))

	p2, err := d.Get(context.Background(), a)
	require.NoError(t, err)
	assert.Equal(t, p, p2)
	assert.Equal(t, int32(1), hits.Load(), "downloaded once")
}

func TestDownloadsChecksumMismatch(t *testing.T) {
	srv, _ := imageServer(t, map[string][]byte{"/initrd": []byte("tampered")})
	dir := t.TempDir()
	d := &lava.Downloads{Dir: dir}
	_, err := d.Get(context.Background(), lava.Artifact{URL: srv.URL + "/initrd", Checksums: map[string]string{"sha256sum": sum256([]byte("original"))}})
	require.ErrorIs(t, err, lava.ErrChecksum)
	assert.Contains(t, err.Error(), "sha256sum")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing is kept of a bad image")
}

func TestDownloadsDecompress(t *testing.T) {
	rootfs := bytes.Repeat([]byte("ext4 rootfs block "), 5000)
	for _, kind := range []string{"gz", "bz2", "xz", "zstd"} {
		t.Run(kind, func(t *testing.T) {
			packed := compress(t, kind, rootfs)
			srv, _ := imageServer(t, map[string][]byte{"/rootfs.ext4." + kind: packed})
			d := &lava.Downloads{Dir: t.TempDir()}
			p, err := d.Get(context.Background(), lava.Artifact{URL: srv.URL + "/rootfs.ext4." + kind, Compression: kind,
				Checksums: map[string]string{"sha256sum": sum256(packed)}})
			require.NoError(t, err)
			got, err := os.ReadFile(p)
			require.NoError(t, err)
			assert.Equal(t, rootfs, got)
			assert.Equal(t, "rootfs.ext4", filepath.Base(p))
		})
	}
}

func TestDownloadsLocalFileVerified(t *testing.T) {
	dir := t.TempDir()
	data := []byte("local rootfs")
	packed := compress(t, "gz", data)
	src := filepath.Join(dir, "rootfs.img.gz")
	require.NoError(t, os.WriteFile(src, packed, 0o644))
	d := &lava.Downloads{Dir: filepath.Join(dir, "cache")}
	p, err := d.Get(context.Background(), lava.Artifact{URL: src, Compression: "gz", Checksums: map[string]string{"md5sum": sumMD5(packed)}})
	require.NoError(t, err)
	got, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, data, got)

	_, err = d.Get(context.Background(), lava.Artifact{URL: src, Checksums: map[string]string{"md5sum": sumMD5(data)}})
	require.ErrorIs(t, err, lava.ErrChecksum)

	plain, err := d.Get(context.Background(), lava.Artifact{URL: src})
	require.NoError(t, err)
	assert.Equal(t, src, plain, "a plain local file is used where it is")
}

func TestDownloadsBounded(t *testing.T) {
	big := bytes.Repeat([]byte{0}, 1<<20)
	packed := compress(t, "gz", big) // a small file that expands
	srv, _ := imageServer(t, map[string][]byte{"/big": big, "/bomb.gz": packed})
	d := &lava.Downloads{Dir: t.TempDir(), MaxBytes: 64 << 10}
	_, err := d.Get(context.Background(), lava.Artifact{URL: srv.URL + "/big"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "limited")
	require.Less(t, len(packed), 64<<10)
	_, err = d.Get(context.Background(), lava.Artifact{URL: srv.URL + "/bomb.gz", Compression: "gz"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "limited")
}

func TestDownloadsRejects(t *testing.T) {
	d := &lava.Downloads{Dir: t.TempDir()}
	_, err := d.Get(context.Background(), lava.Artifact{URL: "http://127.0.0.1:1/x", Compression: "lzma"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `compression "lzma"`)
	_, err = d.Get(context.Background(), lava.Artifact{URL: "http://127.0.0.1:1/x", Checksums: map[string]string{"crc": "0"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown checksum "crc"`)
}

func TestDownloadsLocalBounds(t *testing.T) {
	d := &lava.Downloads{Dir: t.TempDir()}
	_, err := d.Get(context.Background(), lava.Artifact{URL: "/dev/zero", Checksums: map[string]string{"md5sum": strings.Repeat("0", 32)}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a regular file")
	secret := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secret, []byte("host file"), 0o600))
	_, err = d.Get(context.Background(), lava.Artifact{URL: secret, Checksums: map[string]string{"sha256sum": strings.Repeat("0", 64)}})
	require.ErrorIs(t, err, lava.ErrChecksum)
	assert.NotContains(t, err.Error(), sum256([]byte("host file")), "a host file's digest is not told")
}

// TestImportedImagesUnderRoot: the images of an imported job are under
// the images root (Options.Images), so that jobs.Job.ConfineImages takes
// them: http(s) downloads and checked local files land in the root's
// CacheDir and the job names them relative to the root; local files are
// read from inside the root only, symlinks followed.
func TestImportedImagesUnderRoot(t *testing.T) {
	kernel := bytes.Repeat([]byte("vmlinuz "), 100)
	srv, _ := imageServer(t, map[string][]byte{"/k/vmlinuz": kernel})
	root, outside := t.TempDir(), t.TempDir()
	dtb := []byte("dtb\n")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "boards"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "boards", "b.dtb"), dtb, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "initrd.img"), []byte("initrd\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret.dtb"), dtb, 0o644))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret.dtb"), filepath.Join(root, "link.dtb")))

	job := func(dtbURL string) string {
		return "job_name: i\ndevice_type: qemu\nactions:\n- deploy:\n    to: tmpfs\n" +
			"    kernel: {url: '" + srv.URL + "/k/vmlinuz', sha256sum: " + sum256(kernel) + "}\n" +
			"    ramdisk: {url: initrd.img}\n" +
			"    dtb: {url: '" + dtbURL + "', md5sum: " + sumMD5(dtb) + "}\n"
	}
	// As the server imports a submitted job: its file name is not in the
	// images root, which is the server's --images directory.
	opts := lava.DefaultOptions()
	opts.Downloads.Offline = false
	opts.Images = root
	j, err := lava.ImportWith("job.yaml", []byte(job("boards/b.dtb")), opts)
	require.NoError(t, err)
	im := j.Actions[0].Images
	assert.Equal(t, "initrd.img", im.Initrd)
	for _, p := range []string{im.Kernel, im.DTB} {
		assert.True(t, filepath.IsLocal(p), p)
		assert.Contains(t, p, lava.CacheDir+string(filepath.Separator), p)
	}
	require.NoError(t, j.ConfineImages(root))
	got, err := os.ReadFile(j.Actions[0].Images.Kernel)
	require.NoError(t, err)
	assert.Equal(t, kernel, got)
	got, err = os.ReadFile(j.Actions[0].Images.DTB)
	require.NoError(t, err)
	assert.Equal(t, dtb, got)

	// As troupe run imports a job file: the root is its directory.
	file := filepath.Join(root, "job.yaml")
	j, err = lava.ImportWith(file, []byte(job("boards/b.dtb")), lava.Options{Downloads: &lava.Downloads{}})
	require.NoError(t, err)
	require.NoError(t, j.ConfineImages(root))
	realRoot, err := filepath.EvalSymlinks(root)
	require.NoError(t, err)
	rel, err := filepath.Rel(realRoot, j.Actions[0].Images.DTB)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(rel, lava.CacheDir+string(filepath.Separator)), rel)

	// A local file read for its checksum must be in the root: a symlink
	// out of it and a missing file get the same error.
	_, err = lava.ImportWith("job.yaml", []byte(job("link.dtb")), opts)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `actions[0].deploy.dtb.url: "link.dtb" is not a file in the images root`)
	_, err = lava.ImportWith("job.yaml", []byte(job("missing.dtb")), opts)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `actions[0].deploy.dtb.url: "missing.dtb" is not a file in the images root`)
	_, err = os.Stat(filepath.Join(outside, lava.CacheDir))
	assert.True(t, os.IsNotExist(err), "nothing cached outside the root")
}
