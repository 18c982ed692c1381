package actors

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/workers/images"
	"github.com/troupe-lab/troupe/workers/workerpb"
)

// TestProxyServesOnlyItsImages: a board proxy answers FetchImage with the
// chunks of the images of its own session's deploy actions only: another
// checksum is refused, and another session or worker gets no answer.
func TestProxyServesOnlyItsImages(t *testing.T) {
	image := filepath.Join(t.TempDir(), "rootfs.img")
	data := bytes.Repeat([]byte("image"), 1000)
	require.NoError(t, os.WriteFile(image, data, 0o644))
	other := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(other, []byte("not in the job"), 0o644))
	src := &images.Source{}
	ref, err := src.Ref(t.Context(), image)
	require.NoError(t, err)
	otherRef, err := src.Ref(t.Context(), other)
	require.NoError(t, err)

	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	defer system.Shutdown()
	// The worker's boards actor: opens nothing, releases at once.
	boards := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*workerpb.CloseBoard); ok {
			ctx.Respond(&workerpb.BoardClosed{Worker: "w1", Session: m.Session})
		}
	}))
	gone := make(chan struct{})
	proxy := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &boardProxy{cfg: Config{Job: &jobs.Job{Name: "j"}, Clock: RealClock{}, Logger: slog.New(slog.DiscardHandler)},
			node: "n-0", board: lab.Board{Name: "b"}, rb: RemoteBoard{Worker: "w1", Boards: boards, Gone: gone, Images: src},
			next: 1, held: map[uint64]*workerpb.ConsoleLines{}, served: map[string]*images.Reader{}, naming: map[int]context.CancelFunc{}}
	}))
	defer func() { _ = system.Root.StopFuture(proxy).Wait() }()
	system.Root.Send(proxy, &doAction{index: 0, action: jobs.Action{Type: jobs.Deploy, Image: image}})

	fetch := func(worker, session, sum string) (*workerpb.ImageChunk, error) {
		res, err := system.Root.RequestFuture(proxy, &workerpb.FetchImage{Worker: worker, Session: session, Sha256: sum}, time.Second).Result()
		if err != nil {
			return nil, err
		}
		return res.(*workerpb.ImageChunk), nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := fetch("w1", proxy.Id, ref.Sum)
		require.NoError(t, err)
		if c.Error == "" {
			assert.Equal(t, data, c.Data)
			break
		}
		require.True(t, time.Now().Before(deadline), "the job's image was never served: %s", c.Error)
		time.Sleep(10 * time.Millisecond)
	}
	c, err := fetch("w1", proxy.Id, otherRef.Sum)
	require.NoError(t, err)
	assert.Contains(t, c.Error, "no image "+otherRef.Sum)
	assert.Empty(t, c.Data)
	_, err = fetch("w1", "another-session", ref.Sum)
	assert.Error(t, err, "another session: no answer")
	_, err = fetch("w2", proxy.Id, ref.Sum)
	assert.Error(t, err, "another worker: no answer")
}
