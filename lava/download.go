package lava

import (
	"bufio"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/md5" //nolint:gosec // LAVA jobs give md5sum; it is checked, not trusted alone
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// DefaultMaxDownload bounds one downloaded image and its decompressed form.
const DefaultMaxDownload = 4 << 30

// Compressions are the values of an image's compression key that troupe
// decompresses; "" and "none" mean the image is used as it is.
var Compressions = []string{"gz", "bz2", "xz", "zstd"}

// ChecksumKeys are the checksum keys of a LAVA image, with their hashes.
var ChecksumKeys = map[string]func() hash.Hash{"md5sum": md5.New, "sha256sum": sha256.New, "sha512sum": sha512.New}

// Artifact is one image of a deploy action.
type Artifact struct {
	URL         string            // http(s):// or a local path
	Compression string            // "", "none" or one of Compressions
	Checksums   map[string]string // ChecksumKeys -> hex digest of the file as given (compressed)
}

// Downloads fetches the images of LAVA jobs once into a cache directory,
// checks their checksums and decompresses them. Entries are keyed by URL,
// compression and checksums; an entry is complete when it exists (it is
// renamed into place only after every check passed).
type Downloads struct {
	Dir      string       // cache directory; created on first use
	Client   *http.Client // nil: http.DefaultClient
	MaxBytes int64        // per image, compressed and decompressed; 0: DefaultMaxDownload
	Offline  bool         // refuse http(s) URLs: only local files
	Mirrors  []Mirror     // URL prefix -> local directory holding the rest of the path
	// Defer fetches nothing: Path checks each image's description and
	// gives the path it will have in the cache. Validating a job defers;
	// running it fetches (Get), which downloads, verifies the checksums
	// and decompresses.
	Defer bool
}

// mirrored maps a URL to a local file of a mirror, if one matches.
func (d *Downloads) mirrored(u string) (string, bool) {
	best := -1
	for i, m := range d.Mirrors {
		if strings.HasPrefix(u, m.Prefix) && (best < 0 || len(m.Prefix) > len(d.Mirrors[best].Prefix)) {
			best = i
		}
	}
	if best < 0 {
		return "", false
	}
	rest := strings.TrimPrefix(u, d.Mirrors[best].Prefix)
	if slices.Contains(strings.Split(rest, "/"), "..") {
		return "", false
	}
	return filepath.Join(d.Mirrors[best].Dir, filepath.FromSlash(rest)), true
}

// ErrOffline reports a URL that needs the network where fetching is off.
var ErrOffline = errors.New("needs the network")

// ErrChecksum reports an image whose contents do not match its checksum.
var ErrChecksum = errors.New("checksum mismatch")

func (d *Downloads) max() int64 {
	if d.MaxBytes > 0 {
		return d.MaxBytes
	}
	return DefaultMaxDownload
}

func (a Artifact) key() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s", a.URL, a.Compression)
	keys := make([]string, 0, len(a.Checksums))
	for k := range a.Checksums {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "\x00%s=%s", k, strings.ToLower(a.Checksums[k]))
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// remote reports whether u is an http(s) URL.
func remote(u string) bool {
	l := strings.ToLower(u)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

// Get returns the path of the image a, downloaded (http, https) or read
// (a local file) once, verified against its checksums and decompressed.
// A local file without compression and checksums is returned as it is,
// unless a mirror gave it: that is copied into the cache.
func (d *Downloads) Get(ctx context.Context, a Artifact) (string, error) {
	a, final, err := d.prepare(a)
	if err != nil || final == a.URL {
		return final, err
	}
	if remote(a.URL) && d.Offline {
		return "", fmt.Errorf("%q %w, and fetching is off here: place the image under the images root and give its path relative to it, or map the URL to a local mirror (--lava-mirror URL=DIR)", a.URL, ErrOffline)
	}
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	if err := os.MkdirAll(d.Dir, 0o755); err != nil {
		return "", fmt.Errorf("download cache: %w", err)
	}
	tmp, err := os.MkdirTemp(d.Dir, ".partial-")
	if err != nil {
		return "", fmt.Errorf("download cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	raw := filepath.Join(tmp, "raw")
	if err := d.fetch(ctx, a, raw); err != nil {
		return "", err
	}
	out := raw
	if a.Compression != "" {
		out = filepath.Join(tmp, "out")
		if err := d.decompress(ctx, a, raw, out); err != nil {
			return "", err
		}
	}
	entry := filepath.Join(tmp, "entry")
	if err := os.Mkdir(entry, 0o755); err != nil {
		return "", fmt.Errorf("download cache: %w", err)
	}
	if err := os.Rename(out, filepath.Join(entry, imageName(a))); err != nil {
		return "", fmt.Errorf("download cache: %w", err)
	}
	if err := os.Rename(entry, filepath.Dir(final)); err != nil {
		if _, serr := os.Stat(final); serr == nil {
			return final, nil // another import completed the same entry
		}
		return "", fmt.Errorf("download cache: %w", err)
	}
	return final, nil
}

// digestLen is the length of each checksum's hex digest.
var digestLen = map[string]int{"md5sum": 32, "sha256sum": 64, "sha512sum": 128}

// Path checks the description of the image a (checksum keys and digests,
// compression) and returns the path Get gives it, fetching nothing.
func (d *Downloads) Path(a Artifact) (string, error) {
	_, final, err := d.prepare(a)
	return final, err
}

// prepare checks a, maps its URL through the mirrors and returns it with
// the path of its cache entry (its own path if it needs none).
func (d *Downloads) prepare(a Artifact) (Artifact, string, error) {
	for k, v := range a.Checksums {
		n, known := digestLen[k]
		if !known {
			return a, "", fmt.Errorf("image %s: unknown checksum %q (md5sum, sha256sum, sha512sum)", a.URL, k)
		}
		if v = strings.TrimSpace(v); len(v) != n || strings.Trim(strings.ToLower(v), "0123456789abcdef") != "" {
			return a, "", fmt.Errorf("image %s: %s must be %d hex digits (got %q)", a.URL, k, n, v)
		}
	}
	switch a.Compression {
	case "", "none":
		a.Compression = ""
	case "gz", "bz2", "xz", "zstd":
	default:
		return a, "", fmt.Errorf("image %s: compression %q is not one of %s", a.URL, a.Compression, strings.Join(Compressions, ", "))
	}
	mirrored := false
	if p, ok := d.mirrored(a.URL); ok {
		a.URL, mirrored = p, true
	}
	if !remote(a.URL) && !mirrored && a.Compression == "" && len(a.Checksums) == 0 {
		return a, a.URL, nil
	}
	if d.Dir == "" {
		return a, "", fmt.Errorf("image %s: no download cache directory", a.URL)
	}
	return a, filepath.Join(d.Dir, a.key(), imageName(a)), nil
}

// imageName is the file name of the cached image: the URL's last element
// without its compression suffix.
func imageName(a Artifact) string {
	p := a.URL
	if u, err := url.Parse(a.URL); err == nil && u.Path != "" {
		p = u.Path
	}
	name := filepath.Base(p)
	for _, s := range []string{".gz", ".bz2", ".xz", ".zst", ".zstd"} {
		if a.Compression != "" && strings.HasSuffix(name, s) {
			name = strings.TrimSuffix(name, s)
		}
	}
	if name == "" || name == "." || name == "/" || name == ".." {
		name = "image"
	}
	return name
}

// fetch copies the image to dst, bounded, and checks its checksums.
func (d *Downloads) fetch(ctx context.Context, a Artifact, dst string) error {
	var src io.ReadCloser
	if remote(a.URL) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL, nil)
		if err != nil {
			return fmt.Errorf("image %s: %w", a.URL, err)
		}
		client := d.Client
		if client == nil {
			client = http.DefaultClient
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("download %s: %w", a.URL, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return fmt.Errorf("download %s: %s", a.URL, resp.Status)
		}
		if resp.ContentLength > d.max() {
			resp.Body.Close()
			return fmt.Errorf("download %s: %d bytes; images are limited to %d", a.URL, resp.ContentLength, d.max())
		}
		src = resp.Body
	} else {
		fi, err := os.Stat(a.URL)
		if err != nil {
			return fmt.Errorf("image: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("image %s: not a regular file", a.URL)
		}
		f, err := os.Open(a.URL)
		if err != nil {
			return fmt.Errorf("image: %w", err)
		}
		src = f
	}
	defer src.Close()
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("download cache: %w", err)
	}
	hashes := map[string]hash.Hash{}
	writers := []io.Writer{f}
	for k := range a.Checksums {
		hashes[k] = ChecksumKeys[k]()
		writers = append(writers, hashes[k])
	}
	n, err := io.Copy(io.MultiWriter(writers...), io.LimitReader(src, d.max()+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", a.URL, err)
	}
	if n > d.max() {
		return fmt.Errorf("download %s: more than %d bytes; images are limited to that", a.URL, d.max())
	}
	for k, h := range hashes {
		got := hex.EncodeToString(h.Sum(nil))
		if want := strings.ToLower(strings.TrimSpace(a.Checksums[k])); got != want {
			if !remote(a.URL) {
				// A local file's digest is not said: it would tell a
				// submitter something about a file of the host.
				return fmt.Errorf("image %s: %w: %s is not %s", a.URL, ErrChecksum, k, want)
			}
			return fmt.Errorf("image %s: %w: %s is %s, the job says %s", a.URL, ErrChecksum, k, got, want)
		}
	}
	return nil
}

// decompress writes the decompressed src to dst, bounded by MaxBytes. gz
// and bz2 are decompressed in process, xz and zstd by the xz and zstd
// programs.
func (d *Downloads) decompress(ctx context.Context, a Artifact, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("download cache: %w", err)
	}
	defer out.Close()
	var r io.Reader
	var cmd *exec.Cmd
	switch a.Compression {
	case "gz":
		zr, err := gzip.NewReader(bufio.NewReader(in))
		if err != nil {
			return fmt.Errorf("image %s: not gzip data: %w", a.URL, err)
		}
		defer zr.Close()
		r = zr
	case "bz2":
		r = bzip2.NewReader(bufio.NewReader(in))
	case "xz", "zstd":
		cmd = exec.CommandContext(ctx, a.Compression, "-dc")
		cmd.Stdin = in
		var stderr strings.Builder
		cmd.Stderr = &stderr
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			return fmt.Errorf("decompress %s: %w", a.URL, err)
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("decompress %s with the %s program: %w", a.URL, a.Compression, err)
		}
		defer func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		}()
		r = pipe
		n, err := io.Copy(out, io.LimitReader(r, d.max()+1))
		if err != nil {
			return fmt.Errorf("decompress %s: %w", a.URL, err)
		}
		if n > d.max() {
			return fmt.Errorf("decompress %s: more than %d bytes; images are limited to that", a.URL, d.max())
		}
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("decompress %s: %s: %w", a.URL, strings.TrimSpace(stderr.String()), err)
		}
		return out.Close()
	}
	n, err := io.Copy(out, io.LimitReader(r, d.max()+1))
	if err != nil {
		return fmt.Errorf("decompress %s: %w", a.URL, err)
	}
	if n > d.max() {
		return fmt.Errorf("decompress %s: more than %d bytes; images are limited to that", a.URL, d.max())
	}
	return out.Close()
}
