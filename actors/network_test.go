package actors

import (
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
)

// oneImage is a backend that takes one image; withImages also takes images.
type oneImage struct{ image string }

func (b *oneImage) On(context.Context) error                 { return nil }
func (b *oneImage) Off(context.Context) error                { return nil }
func (b *oneImage) State(context.Context) (bool, error)      { return false, nil }
func (b *oneImage) Console() io.ReadWriteCloser              { return nil }
func (b *oneImage) Close() error                             { return nil }
func (b *oneImage) Deploy(_ context.Context, s string) error { b.image = s; return nil }

type withImages struct {
	oneImage
	images jobs.Images
}

func (b *withImages) DeployImages(_ context.Context, im jobs.Images) error {
	b.images = im
	return nil
}

func TestDeployImagesOrImage(t *testing.T) {
	ctx := context.Background()
	im := &jobs.Images{Kernel: "k", Initrd: "i"}

	one := &oneImage{}
	require.NoError(t, deploy(ctx, one, jobs.Action{Type: jobs.Deploy, Image: "rootfs"}))
	assert.Equal(t, "rootfs", one.image)
	assert.ErrorIs(t, deploy(ctx, one, jobs.Action{Type: jobs.Deploy, Images: im}), errNoImages)

	both := &withImages{}
	require.NoError(t, deploy(ctx, both, jobs.Action{Type: jobs.Deploy, Images: im}))
	assert.Equal(t, *im, both.images)
	assert.Empty(t, both.image)
}
