package hardware

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFlash(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "rootfs.img")
	require.NoError(t, os.WriteFile(img, []byte("image"), 0o644))
	out := filepath.Join(dir, "flashed")
	ctx := context.Background()

	// The command gets the image's absolute path and the board's name.
	require.NoError(t, flash(ctx, "rpi-01", []string{"/bin/sh", "-c", `cp "$1" "$2-{board}"`, "sh", "{image}", out}, time.Minute, img))
	b, err := os.ReadFile(out + "-rpi-01")
	require.NoError(t, err)
	assert.Equal(t, "image", string(b))

	err = flash(ctx, "rpi-01", []string{"/bin/sh", "-c", "echo writing; echo 'flash error: no device' >&2; exit 3"}, time.Minute, img)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "flash rpi-01: /bin/sh: exit status 3: writing | flash error: no device")

	start := time.Now()
	err = flash(ctx, "rpi-01", []string{"/bin/sh", "-c", "sleep 30 & wait"}, 200*time.Millisecond, img)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "did not finish within 200ms")
	assert.Less(t, time.Since(start), 5*time.Second, "the flasher and its children are killed")

	err = flash(ctx, "rpi-01", []string{"flash", "{device}"}, time.Minute, img)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unknown placeholder {device}")
}

func TestStageForTFTP(t *testing.T) {
	root, src := t.TempDir(), t.TempDir()
	img := filepath.Join(src, "Image")
	require.NoError(t, os.WriteFile(img, []byte("kernel"), 0o644))
	b := &Board{name: "bbb-01", opts: Options{TFTPRoot: root, ServerIP: "127.0.0.1:6969"}}
	require.NoError(t, b.stage(img))
	got, err := os.ReadFile(filepath.Join(root, "bbb-01", "Image"))
	require.NoError(t, err)
	assert.Equal(t, "kernel", string(got), "served under the board's own directory")
	assert.Equal(t, map[string]string{"server_ip": "127.0.0.1:6969", "kernel": "bbb-01/Image", "image": "bbb-01/Image"}, b.vars)
	err = b.stage(filepath.Join(src, "missing"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "deploy "+filepath.Join(src, "missing")+" to bbb-01")
}
