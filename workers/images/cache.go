package images

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Fetch reads the chunk of an image at offset from the server.
type Fetch func(ctx context.Context, offset int64) ([]byte, error)

// ErrCorrupt is the error of an image whose content does not match its
// checksum or size as it arrived.
var ErrCorrupt = errors.New("image corrupted in transit")

// Cache is a worker's side: the images it fetched, kept under Dir by
// checksum (<dir>/<sha256>/<name>), each fetched once however many nodes
// deploy it. Images in use by a session are never evicted; the others go,
// least recently used first, when a new one would pass MaxTotal.
type Cache struct {
	dir      string
	maxBytes int64
	maxTotal int64

	// slots bound the images fetched at once: each has one chunk in
	// flight, and the remote carries a batch of them in one gRPC message
	// (4 MiB at most by default).
	slots chan struct{}

	mu      sync.Mutex
	entries map[string]*entry    // checksum → image kept
	flights map[string]chan bool // checksum → being fetched, linked or removed
	used    int64                // bytes kept or being fetched
	tick    uint64
}

type entry struct {
	size    int64
	names   []string
	holders int
	last    uint64 // tick of the last use
}

// NewCache opens the cache in dir (made if need be), taking in what an
// earlier run of the worker kept there: maxBytes bounds one image (0:
// DefaultMaxBytes), maxTotal all of them (0: twice maxBytes).
func NewCache(dir string, maxBytes, maxTotal int64) (*Cache, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if maxTotal <= 0 {
		maxTotal = 2 * maxBytes
	}
	c := &Cache{dir: dir, maxBytes: maxBytes, maxTotal: maxTotal, entries: map[string]*entry{}, flights: map[string]chan bool{},
		slots: make(chan struct{}, MaxFetches)}
	if err := os.RemoveAll(filepath.Join(dir, ".part")); err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, ".part"), 0o700); err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	for _, de := range des {
		if !sumForm.MatchString(de.Name()) {
			continue
		}
		files, err := os.ReadDir(filepath.Join(dir, de.Name()))
		if err != nil || len(files) == 0 {
			_ = os.RemoveAll(filepath.Join(dir, de.Name()))
			continue
		}
		e := &entry{}
		for _, f := range files {
			info, err := f.Info()
			if err != nil || !info.Mode().IsRegular() {
				continue
			}
			e.size = info.Size()
			e.names = append(e.names, f.Name())
		}
		if len(e.names) > 0 {
			c.entries[de.Name()] = e
			c.used += e.size
		}
	}
	return c, nil
}

// MaxFetches bounds the images a worker fetches at once.
const MaxFetches = 4

var sumForm = regexp.MustCompile(`^[0-9a-f]{64}$`)

// check refuses a Ref that cannot be kept: a bad checksum or name, or
// over the bound.
func (c *Cache) check(ref Ref) error {
	switch {
	case !sumForm.MatchString(ref.Sum):
		return fmt.Errorf("image %q: bad checksum %q", ref.Name, ref.Sum)
	case ref.Name == "" || ref.Name != filepath.Base(ref.Name) || !filepath.IsLocal(ref.Name) || len(ref.Name) > 255 ||
		strings.ContainsFunc(ref.Name, func(r rune) bool { return r < ' ' || r == 0x7f }) || strings.HasPrefix(ref.Name, "."):
		return fmt.Errorf("image %q: bad name", ref.Name)
	case ref.Size < 0 || ref.Size > c.maxBytes:
		return fmt.Errorf("image %s: %w: %d bytes; this worker takes images of at most %d bytes", ref.Name, ErrTooBig, ref.Size, c.maxBytes)
	}
	return nil
}

// Get is the path of the image ref on this worker, fetched with fetch if
// the cache does not have it. The image stays until release is called.
func (c *Cache) Get(ctx context.Context, ref Ref, fetch Fetch) (path string, release func(), err error) {
	if err := c.check(ref); err != nil {
		return "", nil, err
	}
	path = filepath.Join(c.dir, ref.Sum, ref.Name)
	for {
		c.mu.Lock()
		if wait, busy := c.flights[ref.Sum]; busy {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return "", nil, ctx.Err()
			}
		}
		e := c.entries[ref.Sum]
		if e != nil && slices.Contains(e.names, ref.Name) {
			c.tick++
			e.holders++
			e.last = c.tick
			c.mu.Unlock()
			return path, c.releaser(ref.Sum), nil
		}
		done := make(chan bool)
		c.flights[ref.Sum] = done
		var evict []string
		reserved := false
		if e == nil {
			evict, err = c.makeRoom(ref.Size)
			reserved = err == nil
		}
		for _, s := range evict {
			c.flights[s] = done
		}
		c.mu.Unlock()
		for _, s := range evict {
			_ = os.RemoveAll(filepath.Join(c.dir, s))
		}
		if err == nil {
			if e != nil {
				err = c.link(e, ref)
			} else {
				err = c.fetch(ctx, ref, fetch)
			}
		}
		c.mu.Lock()
		delete(c.flights, ref.Sum)
		for _, s := range evict {
			delete(c.flights, s)
		}
		switch {
		case err == nil && e != nil:
			e.names = append(e.names, ref.Name)
		case err == nil:
			c.entries[ref.Sum] = &entry{size: ref.Size, names: []string{ref.Name}}
		case reserved:
			c.used -= ref.Size
		}
		close(done)
		c.mu.Unlock()
		if err != nil {
			return "", nil, err
		}
	}
}

// makeRoom reserves size bytes, choosing the unused images to evict
// (least recently used first). c.mu is held.
func (c *Cache) makeRoom(size int64) ([]string, error) {
	var evict []string
	free := slices.SortedFunc(maps.Keys(c.entries), func(a, b string) int {
		return cmp.Compare(c.entries[a].last, c.entries[b].last)
	})
	for _, s := range free {
		if c.used+size <= c.maxTotal {
			break
		}
		if e := c.entries[s]; e.holders == 0 && c.flights[s] == nil {
			c.used -= e.size
			delete(c.entries, s)
			evict = append(evict, s)
		}
	}
	if c.used+size > c.maxTotal {
		return evict, fmt.Errorf("image cache full: %d bytes of images in use here, the cache holds %d", c.used, c.maxTotal)
	}
	c.used += size
	return evict, nil
}

func (c *Cache) releaser(sum string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if e := c.entries[sum]; e != nil && e.holders > 0 {
				e.holders--
			}
		})
	}
}

// link gives a kept image another name.
func (c *Cache) link(e *entry, ref Ref) error {
	dir := filepath.Join(c.dir, ref.Sum)
	if err := os.Link(filepath.Join(dir, e.names[0]), filepath.Join(dir, ref.Name)); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("image %s: %w", ref.Name, err)
	}
	return nil
}

// fetch reads the image's chunks in order into a part file, checks size
// and checksum and moves it in place.
func (c *Cache) fetch(ctx context.Context, ref Ref, fetch Fetch) error {
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	case <-ctx.Done():
		return fmt.Errorf("image %s: %w", ref.Name, ctx.Err())
	}
	part, err := os.CreateTemp(filepath.Join(c.dir, ".part"), ref.Sum+"-*")
	if err != nil {
		return fmt.Errorf("image %s: %w", ref.Name, err)
	}
	defer os.Remove(part.Name())
	defer part.Close()
	h := sha256.New()
	var off int64
	for off < ref.Size {
		chunk, err := fetch(ctx, off)
		if err != nil {
			return fmt.Errorf("image %s: at byte %d: %w", ref.Name, off, err)
		}
		if len(chunk) == 0 || len(chunk) > ChunkSize || off+int64(len(chunk)) > ref.Size {
			return fmt.Errorf("image %s: %w: a chunk of %d bytes at byte %d of %d", ref.Name, ErrCorrupt, len(chunk), off, ref.Size)
		}
		h.Write(chunk)
		if _, err := part.Write(chunk); err != nil {
			return fmt.Errorf("image %s: %w", ref.Name, err)
		}
		off += int64(len(chunk))
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != ref.Sum {
		return fmt.Errorf("image %s: %w: its checksum is %s, the server's %s", ref.Name, ErrCorrupt, got, ref.Sum)
	}
	if err := part.Close(); err != nil {
		return fmt.Errorf("image %s: %w", ref.Name, err)
	}
	dir := filepath.Join(c.dir, ref.Sum)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("image %s: %w", ref.Name, err)
	}
	if err := os.Chmod(part.Name(), 0o644); err != nil {
		return fmt.Errorf("image %s: %w", ref.Name, err)
	}
	if err := os.Rename(part.Name(), filepath.Join(dir, ref.Name)); err != nil {
		return fmt.Errorf("image %s: %w", ref.Name, err)
	}
	return nil
}
