// Package store keeps the server's state in an embedded bbolt database:
// every job (its source, status, attempts and results), the idempotency
// keys of submissions and the health of every board. Every change is
// committed (fsynced) before it is acknowledged, so a server killed at any
// moment loses nothing it answered. A damaged file is refused with
// ErrDamaged when it is opened, never read into a crash.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/troupe-lab/troupe/report"
)

var (
	jobsBucket   = []byte("jobs")
	boardsBucket = []byte("boards")
	keysBucket   = []byte("idempotency") // submitter NUL key → job key
)

// ErrDamaged is the error of a store file that is not a sound database:
// empty, truncated, or with a damaged page.
var ErrDamaged = errors.New("store damaged")

// Job statuses besides report's final ones.
const (
	StatusQueued  = "queued"
	StatusRunning = "running"
)

// Job is everything the server keeps about one submitted job.
type Job struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Status    string            `json:"status"`
	Error     string            `json:"error"`
	Priority  int               `json:"priority"`
	Roles     map[string]int    `json:"roles"`
	Format    string            `json:"format"` // "toml" or "lava"
	File      string            `json:"file"`   // the name it was submitted under
	Source    string            `json:"source"`
	Submitter string            `json:"submitter,omitempty"`
	Key       string            `json:"idempotency_key,omitempty"` // the submission's Idempotency-Key
	Submitted time.Time         `json:"submitted"`
	Started   *time.Time        `json:"started"`
	Ended     *time.Time        `json:"ended"`
	Boards    map[string]string `json:"boards,omitempty"` // node → board of the current attempt
	Attempts  []report.Attempt  `json:"attempts,omitempty"`
	Results   *report.Results   `json:"results,omitempty"`
}

// Ended tells whether status is final.
func Ended(status string) bool { return status != StatusQueued && status != StatusRunning }

// Store is the server's database. Its writes are committed together:
// the writes that arrive while a commit is under way wait for it and are
// then committed (and fsynced) at once, in one transaction, so that many
// submitters at once cost one fsync per commit, not one each (group
// commit). A write returns once its transaction is on disk.
type Store struct {
	db *bolt.DB

	mu      sync.Mutex
	pending []*write // waiting for the next commit, in order
	closed  bool
	wake    chan struct{} // capacity 1: a write is pending, or the store closed
	stopped chan struct{} // closed when the committer has returned
	commits atomic.Int64  // transactions committed by the committer
}

// write is one change waiting to be committed; its error is sent on done
// (capacity 1) once it is.
type write struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// ErrClosed is the error of a write to a closed store.
var ErrClosed = errors.New("store closed")

// maxBatch bounds the writes committed in one transaction.
const maxBatch = 1000

// Open opens (or creates) the database at path. It fails at once when
// another process holds it, and with ErrDamaged when the file is damaged
// (checked before bbolt maps it, and page by page after).
func Open(path string) (*Store, error) {
	db, err := open(path)
	if errors.Is(err, ErrDamaged) {
		return nil, fmt.Errorf("open store %s: %w; restore it from a backup, or move it and the jobs folder beside it away to start afresh", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go s.committer()
	return s, nil
}

func open(path string) (*bolt.DB, error) {
	if err := checkFile(path); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	db, err := boltOpen(path)
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, errors.New("in use by another troupe server")
	case errors.Is(err, bolt.ErrInvalid) || errors.Is(err, bolt.ErrVersionMismatch) || errors.Is(err, bolt.ErrChecksum):
		return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
	case err != nil:
		return nil, err
	}
	if err := check(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{jobsBucket, boardsBucket, keysBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// bbolt's file layout: pages 0 and 1 are meta pages, each a 16-byte page
// header then the meta fields, all in the machine's byte order.
const (
	pageHeader   = 16
	metaMagic    = 0xED0CDAED
	metaVersion  = 2
	metaChecksum = 56 // offset of the checksum in the meta
	metaSize     = 64
)

// checkFile checks what bbolt trusts before it maps the file: an existing
// file has a valid meta page, and every page a valid meta counts lies
// inside the file (reading a page past the end of a mapping is a SIGBUS).
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // a new store
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size == 0 {
		return errors.New("the file is empty")
	}
	first := make([]byte, pageHeader+metaSize)
	if _, err := io.ReadFull(f, first); err != nil {
		return fmt.Errorf("the file is %d bytes, too short for a database", size)
	}
	pageSize := int64(os.Getpagesize())
	if m, ok := parseMeta(first[pageHeader:]); ok {
		pageSize = int64(m.pageSize)
	}
	second := make([]byte, pageHeader+metaSize)
	metas := []meta{}
	if m, ok := parseMeta(first[pageHeader:]); ok {
		metas = append(metas, m)
	}
	if _, err := f.ReadAt(second, pageSize); err == nil {
		if m, ok := parseMeta(second[pageHeader:]); ok {
			metas = append(metas, m)
		}
	}
	if len(metas) == 0 {
		return errors.New("no valid meta page: not a troupe store, or its header is damaged")
	}
	for _, m := range metas {
		if need := int64(m.pgid) * int64(m.pageSize); need > size {
			return fmt.Errorf("truncated: %d bytes, its pages need %d", size, need)
		}
	}
	return nil
}

type meta struct {
	pageSize uint32
	pgid     uint64
}

// parseMeta reads a bbolt meta; ok when its magic, version and checksum
// hold.
func parseMeta(b []byte) (meta, bool) {
	bo := binary.NativeEndian
	if len(b) < metaSize || bo.Uint32(b[0:]) != metaMagic || bo.Uint32(b[4:]) != metaVersion {
		return meta{}, false
	}
	h := fnv.New64a()
	_, _ = h.Write(b[:metaChecksum])
	if h.Sum64() != bo.Uint64(b[metaChecksum:]) {
		return meta{}, false
	}
	m := meta{pageSize: bo.Uint32(b[8:]), pgid: bo.Uint64(b[40:])}
	if m.pageSize < 512 || m.pageSize > 1<<20 {
		return meta{}, false
	}
	return m, true
}

// boltOpen opens the file with bbolt, which reads its freelist page: a
// damaged one is an error, not a crash.
func boltOpen(path string) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: a damaged page: %v", ErrDamaged, r)
			db = nil
		}
	}()
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
}

// check runs bbolt's page-by-page consistency check. A damaged page can
// make bbolt's readers panic or fault; both become an error here.
func check(db *bolt.DB) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("a damaged page: %v", r)
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		var errs []error
		for e := range tx.Check() {
			if len(errs) < 3 {
				errs = append(errs, e)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("damaged pages: %w", errors.Join(errs...))
		}
		return nil
	})
}

// Close commits the writes already waiting, then closes the database;
// later writes fail with ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.signal()
	<-s.stopped
	return s.db.Close()
}

func (s *Store) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// update runs fn in a write transaction that other writes may share, and
// returns once that transaction is committed. An error of fn undoes fn's
// changes only: the other writes of the transaction are committed
// without it. fn may run more than once (its transaction is then rolled
// back first), so it must have no effect outside tx but on its own
// results.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	w := &write{fn: fn, done: make(chan error, 1)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.pending = append(s.pending, w)
	s.mu.Unlock()
	s.signal()
	// The committer answers every write it took, and takes every write
	// pending before it returns (Close).
	return <-w.done
}

// committer commits the pending writes, as many at once as are waiting.
func (s *Store) committer() {
	defer close(s.stopped)
	for {
		s.mu.Lock()
		batch := s.pending[:min(len(s.pending), maxBatch)]
		s.pending = s.pending[len(batch):]
		closed, more := s.closed, len(s.pending) > 0
		s.mu.Unlock()
		if len(batch) > 0 {
			s.commit(batch)
		}
		switch {
		case more || len(batch) > 0:
		case closed:
			return
		default:
			<-s.wake
		}
	}
}

// commit commits batch in one transaction. A write whose fn fails is
// answered with its error and the transaction is run again without it.
func (s *Store) commit(batch []*write) {
	for len(batch) > 0 {
		failed := -1
		var failure error
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i, w := range batch {
				if err := w.fn(tx); err != nil {
					failed, failure = i, err
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			batch[failed].done <- failure
			batch = append(batch[:failed:failed], batch[failed+1:]...)
			continue
		}
		s.commits.Add(1)
		for _, w := range batch {
			w.done <- err
		}
		return
	}
}

func key(id string) ([]byte, error) {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("job id %q: not a job id", id)
	}
	return binary.BigEndian.AppendUint64(nil, n), nil
}

// Add gives j the next job ID for which taken (nil: none) is false and
// stores it. A job with a Key that its submitter already used is not
// stored: Add returns the ID of the first job stored with that key.
func (s *Store) Add(j *Job, taken func(id string) bool) (first string, err error) {
	err = s.update(func(tx *bolt.Tx) error {
		first = ""
		keys := tx.Bucket(keysBucket)
		var ik []byte
		if j.Key != "" {
			ik = []byte(j.Submitter + "\x00" + j.Key)
			if k := keys.Get(ik); k != nil {
				first = strconv.FormatUint(binary.BigEndian.Uint64(k), 10)
				return nil
			}
		}
		b := tx.Bucket(jobsBucket)
		for {
			n, err := b.NextSequence()
			if err != nil {
				return fmt.Errorf("add job %s: %w", j.Name, err)
			}
			j.ID = strconv.FormatUint(n, 10)
			if taken == nil || !taken(j.ID) {
				break
			}
		}
		if ik != nil {
			k, _ := key(j.ID)
			if err := keys.Put(ik, k); err != nil {
				return fmt.Errorf("add job %s: %w", j.Name, err)
			}
		}
		return put(b, j)
	})
	return first, err
}

// Delete removes the jobs ids and their idempotency keys. Their IDs are
// never given again.
func (s *Store) Delete(ids ...string) error {
	err := s.update(func(tx *bolt.Tx) error {
		b, keys := tx.Bucket(jobsBucket), tx.Bucket(keysBucket)
		for _, id := range ids {
			k, err := key(id)
			if err != nil {
				return err
			}
			var j Job
			if v := b.Get(k); v != nil && json.Unmarshal(v, &j) == nil && j.Key != "" {
				if err := keys.Delete([]byte(j.Submitter + "\x00" + j.Key)); err != nil {
					return err
				}
			}
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete jobs: %w", err)
	}
	return nil
}

// Sequence is the last job ID given (0 for a store that never had a job).
func (s *Store) Sequence() (uint64, error) {
	var n uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(jobsBucket).Sequence()
		return nil
	})
	return n, err
}

// Put stores j (which has an ID) over its previous version.
func (s *Store) Put(j *Job) error {
	return s.update(func(tx *bolt.Tx) error { return put(tx.Bucket(jobsBucket), j) })
}

func put(b *bolt.Bucket, j *Job) error {
	k, err := key(j.ID)
	if err != nil {
		return err
	}
	v, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("store job %s: %w", j.ID, err)
	}
	if err := b.Put(k, v); err != nil {
		return fmt.Errorf("store job %s: %w", j.ID, err)
	}
	return nil
}

// Jobs returns every job, oldest first.
func (s *Store) Jobs() ([]*Job, error) {
	var js []*Job
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(jobsBucket).ForEach(func(k, v []byte) error {
			j := &Job{}
			if err := json.Unmarshal(v, j); err != nil {
				return fmt.Errorf("job %d: %w: %w", binary.BigEndian.Uint64(k), ErrDamaged, err)
			}
			js = append(js, j)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read jobs: %w", err)
	}
	return js, nil
}

// Health returns the stored health of every board that has one.
func (s *Store) Health() (map[string]string, error) {
	h := map[string]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(boardsBucket).ForEach(func(k, v []byte) error {
			h[string(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read board health: %w", err)
	}
	return h, nil
}

// SetHealth stores a board's health.
func (s *Store) SetHealth(board, health string) error {
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(boardsBucket).Put([]byte(board), []byte(health))
	})
	if err != nil {
		return fmt.Errorf("store health of %s: %w", board, err)
	}
	return nil
}

// Batch is writes to commit together, in one transaction (Store.Commit).
type Batch struct {
	jobs   []*Job
	health [][2]string // board, health
}

// Put adds storing j over its previous version (a later Put of the same
// job wins).
func (b *Batch) Put(j *Job) { b.jobs = append(b.jobs, j) }

// SetHealth adds storing a board's health.
func (b *Batch) SetHealth(board, health string) {
	b.health = append(b.health, [2]string{board, health})
}

// Len is the number of writes in b.
func (b *Batch) Len() int { return len(b.jobs) + len(b.health) }

// Commit stores every write of b, or none of them.
func (s *Store) Commit(b *Batch) error {
	err := s.update(func(tx *bolt.Tx) error {
		for _, j := range b.jobs {
			if err := put(tx.Bucket(jobsBucket), j); err != nil {
				return err
			}
		}
		for _, h := range b.health {
			if err := tx.Bucket(boardsBucket).Put([]byte(h[0]), []byte(h[1])); err != nil {
				return fmt.Errorf("store health of %s: %w", h[0], err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("commit %d writes: %w", b.Len(), err)
	}
	return nil
}
