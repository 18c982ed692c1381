package jobs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
)

func TestDeployImages(t *testing.T) {
	src := edit(t, `image = "images/rootfs.tar"`, `images = {kernel = "vm/vmlinuz", initrd = "initrd", rootfs = "vm/disk.img", dtb = "vm/board.dtb"}`)
	j, err := jobs.Parse("examples/job.toml", []byte(src))
	require.NoError(t, err)
	assert.Equal(t, &jobs.Images{Kernel: "examples/vm/vmlinuz", Initrd: "examples/initrd", Rootfs: "examples/vm/disk.img", DTB: "examples/vm/board.dtb"}, j.Actions[0].Images)
	assert.Empty(t, j.Actions[0].Image)

	assert.Contains(t, roundTrip(t, j), `images = {kernel = "vm/vmlinuz", initrd = "initrd", rootfs = "vm/disk.img", dtb = "vm/board.dtb"}`)
}

func TestDeployImagesErrors(t *testing.T) {
	for _, tc := range []struct{ name, images, want string }{
		{"no kernel", `images = {initrd = "i"}`, `job.toml:15: action[0].images.kernel: is required`},
		{"unknown key", `images = {kernel = "k", fdt = "d"}`, `job.toml:15: action[0].images: unknown key "fdt"`},
		{"empty", `images = {kernel = ""}`, `job.toml:15: action[0].images.kernel: must not be empty`},
		{"url", `images = {kernel = "http://x/k"}`, `job.toml:15: action[0].images.kernel: must be a file path (got "http://x/k")`},
		{"both", `image = "x"` + "\n" + `images = {kernel = "k"}`, `action[0].images: a deploy action has image or images, not both`},
		{"not a table", `images = "k"`, `job.toml:15: action[0].images: must be a table`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := jobs.Parse("job.toml", []byte(edit(t, `image = "images/rootfs.tar"`, tc.images)))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	src := edit(t, `type = "boot"`, `type = "boot"`+"\n"+`images = {kernel = "k"}`)
	_, err := jobs.Parse("job.toml", []byte(src))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `action[1].images: not allowed on a boot action`)
}

// TestImagePathsRefused: paths that could leave the images root are refused
// from their text alone, the same way whether they exist or not.
func TestImagePathsRefused(t *testing.T) {
	const outside = `must be a path inside the images root, without '..'`
	for _, tc := range []struct{ path, want string }{
		{"/etc/passwd", outside},
		{"/no/such/file", outside},
		{"..", outside},
		{"../job.toml", outside},
		{"a/../../etc", outside},
		{"a/../b", outside},
		{"disk.img,if=none", `must not contain ',' or control characters`},
		{"disk\x01.img", `must not contain ',' or control characters`},
		{"https://example.com/x", `must be a file path`},
		{"", `must not be empty`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			for _, src := range []string{
				edit(t, `image = "images/rootfs.tar"`, `image = "`+strings.ReplaceAll(tc.path, "\x01", `\u0001`)+`"`),
				edit(t, `image = "images/rootfs.tar"`, `images = {kernel = "`+strings.ReplaceAll(tc.path, "\x01", `\u0001`)+`"}`),
			} {
				_, err := jobs.Parse("job.toml", []byte(src))
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.want)
			}
		})
	}
}

// TestConfineImages: images resolve under the root only, symlinks
// followed; a missing image and one whose symlink leaves the root get the
// same error.
func TestConfineImages(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "rootfs", "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "kernel"), []byte("k"), 0o644))
	require.NoError(t, os.Symlink("kernel", filepath.Join(root, "link-in")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "link-out")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "missing"), filepath.Join(root, "link-missing")))
	require.NoError(t, os.Symlink("../"+filepath.Base(outside), filepath.Join(root, "dir-out")))
	require.NoError(t, os.Symlink("/etc", filepath.Join(root, "etc")))

	parse := func(t *testing.T, line string) *jobs.Job {
		j, err := jobs.Parse(filepath.Join(root, "job.toml"), []byte(edit(t, `image = "images/rootfs.tar"`, line)))
		require.NoError(t, err)
		return j
	}
	real, err := filepath.EvalSymlinks(root)
	require.NoError(t, err)
	for _, tc := range []struct{ line, want string }{
		{`image = "rootfs"`, "rootfs"},
		{`image = "rootfs/etc/"`, "rootfs/etc"},
		{`image = "link-in"`, "kernel"},
	} {
		j := parse(t, tc.line)
		require.NoError(t, j.ConfineImages(root), tc.line)
		assert.Equal(t, filepath.Join(real, tc.want), j.Actions[0].Image)
	}
	j := parse(t, `images = {kernel = "link-in", rootfs = "rootfs/etc", dtb = "kernel"}`)
	require.NoError(t, j.ConfineImages(root))
	assert.Equal(t, &jobs.Images{Kernel: filepath.Join(real, "kernel"), Rootfs: filepath.Join(real, "rootfs/etc"), DTB: filepath.Join(real, "kernel")}, j.Actions[0].Images)
	j = parse(t, `images = {kernel = "kernel", dtb = "link-out"}`)
	assert.ErrorContains(t, j.ConfineImages(root), "action[0].images.dtb")

	refused := func(name string) string {
		j := parse(t, `image = "`+name+`"`)
		err := j.ConfineImages(root)
		require.Error(t, err, name)
		return strings.ReplaceAll(err.Error(), name, "NAME")
	}
	want := refused("missing")
	assert.Contains(t, want, `action[0].image: "NAME" is not a file or directory in the images root`)
	for _, name := range []string{"link-out", "link-missing", "dir-out/secret", "dir-out/missing", "etc/passwd", "etc/no-such-file"} {
		assert.Equal(t, want, refused(name), name)
	}
	// The job's directory is only the default root: a server uses its own.
	other := t.TempDir()
	j = parse(t, `image = "rootfs"`)
	require.Error(t, j.ConfineImages(other))
	require.NoError(t, os.Mkdir(filepath.Join(other, "rootfs"), 0o755))
	j = parse(t, `image = "rootfs"`)
	require.NoError(t, j.ConfineImages(other))
	// A missing root has no images.
	j = parse(t, `image = "rootfs"`)
	assert.Error(t, j.ConfineImages(filepath.Join(other, "none")))
	// A job without images needs no root.
	j = parse(t, `image = "rootfs"`)
	j.Actions[0].Image = ""
	assert.NoError(t, j.ConfineImages(""))
}
