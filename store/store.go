// Package store keeps the server's state in an embedded bbolt database:
// every job (its source, status, attempts and results) and the health of
// every board. Every change is committed (fsynced) before it is
// acknowledged, so a server killed at any moment loses nothing it answered.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/troupe-lab/troupe/report"
)

var (
	jobsBucket   = []byte("jobs")
	boardsBucket = []byte("boards")
)

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
	Submitted time.Time         `json:"submitted"`
	Started   *time.Time        `json:"started"`
	Ended     *time.Time        `json:"ended"`
	Boards    map[string]string `json:"boards,omitempty"` // node → board of the current attempt
	Attempts  []report.Attempt  `json:"attempts,omitempty"`
	Results   *report.Results   `json:"results,omitempty"`
}

// Ended tells whether status is final.
func Ended(status string) bool { return status != StatusQueued && status != StatusRunning }

// Store is the server's database.
type Store struct{ db *bolt.DB }

// Open opens (or creates) the database at path. It fails at once when
// another process holds it.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open store %s: in use by another troupe server", path)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{jobsBucket, boardsBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func key(id string) ([]byte, error) {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("job id %q: not a job id", id)
	}
	return binary.BigEndian.AppendUint64(nil, n), nil
}

// Add gives j the next job ID and stores it.
func (s *Store) Add(j *Job) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(jobsBucket)
		n, err := b.NextSequence()
		if err != nil {
			return fmt.Errorf("add job %s: %w", j.Name, err)
		}
		j.ID = strconv.FormatUint(n, 10)
		return put(b, j)
	})
}

// Put stores j (which has an ID) over its previous version.
func (s *Store) Put(j *Job) error {
	return s.db.Update(func(tx *bolt.Tx) error { return put(tx.Bucket(jobsBucket), j) })
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
				return fmt.Errorf("job %d: %w", binary.BigEndian.Uint64(k), err)
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
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(boardsBucket).Put([]byte(board), []byte(health))
	})
	if err != nil {
		return fmt.Errorf("store health of %s: %w", board, err)
	}
	return nil
}
