// Package images carries the images of deploy actions from the server to
// its workers. The server's side (Source) names an image by its SHA-256
// and size, bounded like every image the server takes, and reads it in
// chunks (a directory as a tar of it); a worker's side (Cache) fetches the
// chunks of an image it does not have, checks the checksum and keeps the
// image under its data directory, by checksum, for every later node.
package images

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

const (
	// ChunkSize is the most one chunk of an image carries.
	ChunkSize = 256 << 10
	// DefaultMaxBytes bounds one image: the bound of the images the server
	// downloads (lava.DefaultMaxDownload).
	DefaultMaxBytes = 4 << 30
)

// Ref is an image as it crosses to a worker.
type Ref struct {
	Sum  string // hex SHA-256 of the content
	Size int64
	// Name is the image's base name (a directory's with ".tar"): boards
	// that stage images by name (TFTP) keep it.
	Name string
	Dir  bool // the content is a tar of a directory
}

// ErrTooBig is the error of an image over the bound.
var ErrTooBig = errors.New("image too big")

// Source is the server's side: the checksums of the images it sends,
// computed once per image content (a path whose files did not change is
// not read again), and their chunks.
type Source struct {
	MaxBytes int64 // per image; 0: DefaultMaxBytes

	mu      sync.Mutex
	sums    map[string]sumEntry   // path → its last checksum
	flights map[string]*sumFlight // path → checksum being computed
}

type sumEntry struct {
	print string // the path's files' sizes, times and inodes when summed
	ref   Ref
	err   error // an image refused (too big, unreadable) stays refused
}

type sumFlight struct {
	done chan struct{}
	ref  Ref
	err  error
}

func (s *Source) max() int64 {
	if s.MaxBytes > 0 {
		return s.MaxBytes
	}
	return DefaultMaxBytes
}

// Ref names the image at path (a file or a directory): its checksum and
// size. An image over MaxBytes is refused with ErrTooBig. Callers asking
// for the same path at once share one computation; one whose ctx ends
// leaves it to the others.
func (s *Source) Ref(ctx context.Context, path string) (Ref, error) {
	print, err := fingerprint(path)
	if err != nil {
		return Ref{}, fmt.Errorf("image %s: %w", path, err)
	}
	for {
		s.mu.Lock()
		if e, ok := s.sums[path]; ok && e.print == print {
			s.mu.Unlock()
			return e.ref, e.err
		}
		f := s.flights[path]
		if f == nil {
			f = &sumFlight{done: make(chan struct{})}
			if s.flights == nil {
				s.flights, s.sums = map[string]*sumFlight{}, map[string]sumEntry{}
			}
			s.flights[path] = f
			s.mu.Unlock()
			f.ref, f.err = s.sum(ctx, path)
			s.mu.Lock()
			delete(s.flights, path)
			if ctx.Err() == nil { // else the next caller computes it
				s.sums[path] = sumEntry{print: print, ref: f.ref, err: f.err}
			}
			s.mu.Unlock()
			close(f.done)
			return f.ref, f.err
		}
		s.mu.Unlock()
		select {
		case <-f.done: // its result is in sums, unless its caller gave up
		case <-ctx.Done():
			return Ref{}, ctx.Err()
		}
	}
}

func (s *Source) sum(ctx context.Context, path string) (Ref, error) {
	r, err := s.open(ctx, path)
	if err != nil {
		return Ref{}, err
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, ctxReader{ctx, r})
	if err != nil {
		return Ref{}, err
	}
	return Ref{Sum: hex.EncodeToString(h.Sum(nil)), Size: n, Name: r.name, Dir: r.dir}, nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// image is an image's content as a stream: a file's bytes, or the tar of
// a directory made as it is read; reading past MaxBytes fails ErrTooBig.
type image struct {
	io.Reader
	name string
	dir  bool
	stop func()
}

func (r *image) Close() { r.stop() }

func (s *Source) open(ctx context.Context, path string) (*image, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	max := s.max()
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("image %s: not a file or directory", path)
		}
		if fi.Size() > max {
			return nil, fmt.Errorf("image %s: %w: %d bytes; images are limited to %d bytes", path, ErrTooBig, fi.Size(), max)
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", path, err)
		}
		return &image{Reader: &bounded{r: f, left: max, path: path, max: max}, name: filepath.Base(path), stop: func() { _ = f.Close() }}, nil
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := writeTar(ctx, pw, path); err != nil {
			pw.CloseWithError(fmt.Errorf("image %s: %w", path, err))
			return
		}
		_ = pw.Close()
	}()
	stop := func() {
		cancel()
		_ = pr.Close()
		<-done
	}
	return &image{Reader: &bounded{r: pr, left: max, path: path, max: max}, name: filepath.Base(path) + ".tar", dir: true, stop: stop}, nil
}

// bounded fails a read past max bytes.
type bounded struct {
	r    io.Reader
	left int64
	path string
	max  int64
}

func (b *bounded) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		if n, _ := io.ReadFull(b.r, one[:]); n > 0 {
			return 0, fmt.Errorf("image %s: %w: more than %d bytes; images are limited to that", b.path, ErrTooBig, b.max)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// writeTar writes dir as a tar (lexical order, regular files, directories
// and symbolic links; other kinds are left out as sim boards leave them).
func writeTar(ctx context.Context, w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		switch mode := info.Mode(); {
		case mode.IsDir(), mode.IsRegular():
		case mode&fs.ModeSymlink != 0:
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		default:
			return nil
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// fingerprint is what changes when the image at path changes: the size,
// time and inode of the file, or of every file under the directory.
func fingerprint(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return stamp(".", fi), nil
	}
	h := sha256.New()
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(path, p)
		_, _ = io.WriteString(h, stamp(rel, info))
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func stamp(name string, fi fs.FileInfo) string {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%q %v %d %d %d\n", name, fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), ino)
}

// Reader reads the chunks of one image in turn for a worker.
type Reader struct {
	src  *Source
	path string
	ref  Ref
	img  *image
	pos  int64
}

// Reader reads the image at path, which Ref named ref.
func (s *Source) Reader(path string, ref Ref) *Reader {
	return &Reader{src: s, path: path, ref: ref}
}

// Chunk is the image's content from offset, at most ChunkSize bytes; at
// the end it is empty. Reading in order is cheapest (a directory's tar is
// made again to go back).
func (r *Reader) Chunk(ctx context.Context, offset int64) ([]byte, error) {
	if offset < 0 || offset > r.ref.Size {
		return nil, fmt.Errorf("image %s: offset %d outside its %d bytes", r.ref.Name, offset, r.ref.Size)
	}
	if r.img == nil || offset < r.pos {
		r.Close()
		img, err := r.src.open(context.WithoutCancel(ctx), r.path)
		if err != nil {
			return nil, err
		}
		r.img, r.pos = img, 0
	}
	if offset > r.pos {
		n, err := io.CopyN(io.Discard, r.img, offset-r.pos)
		r.pos += n
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", r.path, err)
		}
	}
	buf := make([]byte, min(ChunkSize, r.ref.Size-offset))
	n, err := io.ReadFull(r.img, buf)
	r.pos += int64(n)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("image %s: %w", r.path, err)
	}
	return buf[:n], nil
}

// Close ends the reading.
func (r *Reader) Close() {
	if r.img != nil {
		r.img.Close()
		r.img = nil
	}
}
