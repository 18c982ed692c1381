package actors

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/workers/images"
	"github.com/troupe-lab/troupe/workers/workerpb"
)

// The images of a deploy action on a worker's board: the proxy names each
// by checksum (images.Source, on the server), the board host fetches the
// ones its worker lacks in chunks (FetchImage), checked and kept by
// checksum under the worker's data directory (images.Cache), and the
// board deploys the worker's copy. Only images of the session's own
// actions are served; the server's paths never cross.

// fetchTimeout bounds the answer to one FetchImage.
const fetchTimeout = 30 * time.Second

// imageField is one image of a deploy action: its field and its path.
type imageField struct{ field, path string }

// imageFields are the images a deploy action names.
func imageFields(a jobs.Action) []imageField {
	var out []imageField
	if a.Image != "" {
		out = append(out, imageField{"image", a.Image})
	}
	if im := a.Images; im != nil {
		for _, f := range []imageField{{"kernel", im.Kernel}, {"initrd", im.Initrd}, {"rootfs", im.Rootfs}, {"dtb", im.DTB}} {
			if f.path != "" {
				out = append(out, f)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(im.Files)) {
			out = append(out, imageField{"files." + k, im.Files[k]})
		}
	}
	return out
}

// imagesNamed is the proxy's own note that the images of a deploy action
// are named (or could not be).
type imagesNamed struct {
	index   int
	pb      *workerpb.DoAction
	readers map[string]*images.Reader // by checksum
	err     error
}

// nameImages names the images of deploy action d off the actor (a first
// checksum reads the whole image) and then sends the action.
func (p *boardProxy) nameImages(ctx actor.Context, d *doAction) {
	src := p.rb.Images
	if src == nil {
		src = &images.Source{}
	}
	fields := imageFields(d.action)
	pb := toPB(p.session, d)
	nctx, cancel := context.WithCancel(p.mnCtx)
	p.naming[d.index] = cancel
	self, root, session := ctx.Self(), ctx.ActorSystem().Root, p.mnCtx
	go func() {
		defer cancel()
		out := &imagesNamed{index: d.index, pb: pb, readers: map[string]*images.Reader{}}
		for _, f := range fields {
			ref, err := src.Ref(nctx, f.path)
			if err != nil {
				out.err = fmt.Errorf("deploy %s: %w", f.field, err)
				break
			}
			pb.Images = append(pb.Images, &workerpb.ImageRef{Field: f.field, Sha256: ref.Sum, Size: ref.Size, Name: ref.Name, Dir: ref.Dir})
			if out.readers[ref.Sum] == nil {
				out.readers[ref.Sum] = src.Reader(f.path, ref)
			}
		}
		if out.err != nil || session.Err() != nil {
			for _, r := range out.readers {
				r.Close()
			}
			out.readers = nil
		}
		if session.Err() == nil { // else the proxy has stopped
			root.Send(self, out)
		}
	}()
}

// fetchImage answers a worker's FetchImage with a chunk of an image of
// this session's deploy actions.
func (p *boardProxy) fetchImage(ctx actor.Context, m *workerpb.FetchImage) {
	if !p.ours(m.Worker, m.Session) {
		return
	}
	out := &workerpb.ImageChunk{Session: m.Session, Sha256: m.Sha256, Offset: m.Offset}
	r := p.served[m.Sha256]
	if r == nil {
		out.Error = fmt.Sprintf("no image %s in session %s", m.Sha256, m.Session)
	} else {
		data, err := r.Chunk(context.Background(), m.Offset)
		if err != nil {
			out.Error = err.Error()
		}
		out.Data = data
	}
	ctx.Respond(out)
}

// imagesFetched is a board host's own note that the images of a deploy
// action are on the worker (or could not be fetched).
type imagesFetched struct {
	m        *workerpb.DoAction
	paths    map[string]string // field → the worker's copy
	releases []func()
	err      error
}

// fetchImages gets the images of deploy action m into the worker's cache
// off the actor, fetching from the proxy what the cache lacks.
func (h *boardHost) fetchImages(ctx actor.Context, m *workerpb.DoAction) {
	cache := h.cfg.Images
	if cache == nil {
		ctx.Send(ctx.Self(), &imagesFetched{m: m, err: fmt.Errorf("worker %s keeps no images", h.cfg.Worker)})
		return
	}
	if h.life == nil {
		h.life, h.endLife = context.WithCancel(context.Background())
	}
	life := h.life
	fctx, cancel := context.WithCancel(life)
	h.fetching[m.Index] = cancel
	self, root, proxy := ctx.Self(), ctx.ActorSystem().Root, h.proxy
	worker, session := h.cfg.Worker, h.open.Session
	go func() {
		defer cancel()
		out := &imagesFetched{m: m, paths: map[string]string{}}
		for _, r := range m.Images {
			ref := images.Ref{Sum: r.Sha256, Size: r.Size, Name: r.Name, Dir: r.Dir}
			fetch := func(ctx context.Context, off int64) ([]byte, error) {
				return fetchChunk(ctx, root, proxy, &workerpb.FetchImage{Worker: worker, Session: session, Sha256: r.Sha256, Offset: off})
			}
			path, release, err := cache.Get(fctx, ref, fetch)
			if err != nil {
				out.err = fmt.Errorf("deploy %s: %w", r.Field, err)
				break
			}
			out.paths[r.Field] = path
			out.releases = append(out.releases, release)
		}
		if life.Err() != nil { // the host has stopped
			for _, release := range out.releases {
				release()
			}
			return
		}
		root.Send(self, out)
	}()
}

// fetchChunk asks the proxy for one chunk.
func fetchChunk(ctx context.Context, root *actor.RootContext, proxy *actor.PID, m *workerpb.FetchImage) ([]byte, error) {
	fut := root.RequestFuture(proxy, m, fetchTimeout)
	type answer struct {
		res interface{}
		err error
	}
	got := make(chan answer, 1)
	go func() {
		res, err := fut.Result()
		got <- answer{res, err}
	}()
	select {
	case a := <-got:
		if a.err != nil {
			return nil, fmt.Errorf("from the server: %w", a.err)
		}
		c, ok := a.res.(*workerpb.ImageChunk)
		switch {
		case !ok || c.Sha256 != m.Sha256 || c.Offset != m.Offset:
			return nil, fmt.Errorf("from the server: %w: an answer for another chunk", images.ErrCorrupt)
		case c.Error != "":
			return nil, fmt.Errorf("from the server: %s", c.Error)
		}
		return c.Data, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// imagesIn is deploy action m with the worker's copies of its images.
func imagesIn(m *workerpb.DoAction, paths map[string]string) *doAction {
	d := fromPBAction(m)
	for field, path := range paths {
		a := &d.action
		if field == "image" {
			a.Image = path
			continue
		}
		if a.Images == nil {
			a.Images = &jobs.Images{}
		}
		switch field {
		case "kernel":
			a.Images.Kernel = path
		case "initrd":
			a.Images.Initrd = path
		case "rootfs":
			a.Images.Rootfs = path
		case "dtb":
			a.Images.DTB = path
		default:
			if name, ok := strings.CutPrefix(field, "files."); ok {
				if a.Images.Files == nil {
					a.Images.Files = map[string]string{}
				}
				a.Images.Files[name] = path
			}
		}
	}
	return d
}
