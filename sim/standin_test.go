package sim

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/boot"
	"github.com/troupe-lab/troupe/console"
	"github.com/troupe-lab/troupe/jobs"
)

// TestStandIn: a board standing in for another device type takes kernel
// images and disk images it cannot boot (a tar rootfs is still unpacked)
// and keeps its own login prompts while typing the job's login commands;
// other sim boards refuse such images and take the job's login.
func TestStandIn(t *testing.T) {
	ctx := ctxT(t, waitTO)
	dir := t.TempDir()
	disk := filepath.Join(dir, "stretch.img")
	require.NoError(t, os.WriteFile(disk, []byte("an ext4 image"), 0o644))

	strict, err := New(Options{Name: "strict", Dir: filepath.Join(dir, "strict")})
	require.NoError(t, err)
	defer func() { require.NoError(t, strict.Close()) }()
	assert.ErrorContains(t, strict.Deploy(ctx, disk), "not a directory, tar or tar.gz image")
	assert.ErrorContains(t, strict.DeployImages(ctx, jobs.Images{Kernel: disk}), "this board is deployed with image, not images")

	b, err := New(Options{Name: "bbb", Dir: filepath.Join(dir, "bbb"), StandIn: true})
	require.NoError(t, err)
	c := console.New(b.Console(), console.Options{})
	defer func() {
		assert.NoError(t, b.Close())
		_ = c.Close()
	}()
	require.NoError(t, b.Deploy(ctx, disk))
	require.NoError(t, b.DeployImages(ctx, jobs.Images{Kernel: disk, Initrd: disk}))
	// The job's prompts are the real image's ("debian login:"): a stand-in
	// keeps its own; its login commands are typed.
	spec := boot.Spec{Login: boot.Login{Prompt: "debian login:", User: "lava", Password: "secret", Commands: []string{"echo typed > login-mark"}}}
	require.NoError(t, b.BootWith(ctx, c, spec))
	got, err := os.ReadFile(filepath.Join(b.Root(), "login-mark"))
	require.NoError(t, err, "the login command ran")
	assert.Equal(t, "typed\n", string(got))
}
