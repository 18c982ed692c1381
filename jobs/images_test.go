package jobs_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
)

func TestDeployImages(t *testing.T) {
	src := edit(t, `image = "images/rootfs.tar"`, `images = {kernel = "vm/vmlinuz", initrd = "/abs/initrd", rootfs = "vm/disk.img", dtb = "vm/board.dtb"}`)
	j, err := jobs.Parse("examples/job.toml", []byte(src))
	require.NoError(t, err)
	assert.Equal(t, &jobs.Images{Kernel: "examples/vm/vmlinuz", Initrd: "/abs/initrd", Rootfs: "examples/vm/disk.img", DTB: "examples/vm/board.dtb"}, j.Actions[0].Images)
	assert.Empty(t, j.Actions[0].Image)

	assert.Contains(t, roundTrip(t, j), `images = {kernel = "vm/vmlinuz", initrd = "/abs/initrd", rootfs = "vm/disk.img", dtb = "vm/board.dtb"}`)
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
