// Package report holds the outcome of a troupe job: the job status, the
// status of every node in the group and the result of every test case. It
// reads and writes results.json, renders JUnit XML for CI systems and prints a
// human summary table.
package report

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// Job statuses.
const (
	StatusComplete   = "complete"
	StatusIncomplete = "incomplete"
	StatusCanceled   = "canceled"
)

// Test case results.
const (
	Pass    = "pass"
	Fail    = "fail"
	Skip    = "skip"
	Unknown = "unknown"
)

// Error classes: who is to blame when a node or job did not complete.
const (
	Infrastructure = "infrastructure" // power, deploy, boot, console lost, board crash
	TestFailure    = "test"           // a test script hung or raised
	JobError       = "job"            // invalid or canceled
)

// File names written by Write.
const (
	JSONFile  = "results.json"
	JUnitFile = "junit.xml"
)

// Job is the outcome of the job as a whole.
type Job struct {
	Name      string  `json:"name"`
	Status    string  `json:"status"`
	Error     string  `json:"error"`
	Class     string  `json:"class,omitempty"` // of the error: infrastructure, test or job
	DurationS float64 `json:"duration_s"`
	// Attempts lists earlier runs of the job that ended with an
	// infrastructure error and were retried on other boards.
	Attempts []Attempt `json:"attempts,omitempty"`
}

// Attempt is one earlier, retried run of a job.
type Attempt struct {
	Boards []string `json:"boards"`
	Error  string   `json:"error"`
}

// Node is the outcome of one board of the group.
type Node struct {
	Name   string `json:"name"`
	Role   string `json:"role"`
	Board  string `json:"board"`
	Status string `json:"status"`
	Error  string `json:"error"`
	Class  string `json:"class,omitempty"` // of the error: infrastructure, test or job
}

// Test is the result of one test case run on one node.
type Test struct {
	Node        string   `json:"node"`
	Role        string   `json:"role"`
	Suite       string   `json:"suite"`
	Name        string   `json:"name"`
	Result      string   `json:"result"`
	Measurement *float64 `json:"measurement,omitempty"`
	Units       string   `json:"units,omitempty"`
	Set         string   `json:"set,omitempty"`       // LAVA test set (lava-test-set)
	Reference   string   `json:"reference,omitempty"` // URL kept with the result (lava-test-reference)
	// Attachments are files the test attached to the case
	// (lava-test-case-attach); Write also saves them as files.
	Attachments []Attachment `json:"attachments,omitempty"`
}

// Attachment is a file attached to a test case, bytes included (base64 in
// JSON). Path is where Write saves it, relative to the results directory.
type Attachment struct {
	Name     string `json:"name"`
	MimeType string `json:"mime_type,omitempty"`
	Size     int    `json:"size"`
	SHA256   string `json:"sha256"`
	Path     string `json:"path"`
	Data     []byte `json:"data"`
}

// NewAttachment describes data attached to case name of suite on node:
// its size, SHA-256 and the path Write saves it at (made of safe names).
func NewAttachment(node, suite, name, file, mimeType string, data []byte) Attachment {
	return Attachment{
		Name: file, MimeType: mimeType, Size: len(data), SHA256: fmt.Sprintf("%x", sha256.Sum256(data)),
		Path: path.Join(AttachmentsDir, safeName(node), safeName(suite), safeName(name), safeName(file)),
		Data: data,
	}
}

// AttachmentsDir is where Write saves attachments, in the results directory.
const AttachmentsDir = "attachments"

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.+-]`)

// safeName makes s one harmless path element: no separators, no "." or
// ".." (a leading dot gets a '_' before it), never empty.
func safeName(s string) string {
	s = unsafeChars.ReplaceAllString(s, "_")
	if s == "" || strings.HasPrefix(s, ".") {
		s = "_" + s
	}
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}

// Results is everything known about a finished (or aborted) job.
type Results struct {
	Job   Job    `json:"job"`
	Nodes []Node `json:"nodes"`
	Tests []Test `json:"tests"`
}

// Mask applies mask to every text of r a test or its node may have
// written (names, units, references, error texts), e.g. to hide a job's
// secrets.
func (r *Results) Mask(mask func(string) string) {
	r.Job.Error = mask(r.Job.Error)
	for i := range r.Job.Attempts {
		r.Job.Attempts[i].Error = mask(r.Job.Attempts[i].Error)
	}
	for i := range r.Nodes {
		r.Nodes[i].Error = mask(r.Nodes[i].Error)
	}
	for i := range r.Tests {
		t := &r.Tests[i]
		t.Suite, t.Name, t.Units, t.Set, t.Reference = mask(t.Suite), mask(t.Name), mask(t.Units), mask(t.Set), mask(t.Reference)
		for k := range t.Attachments {
			a := &t.Attachments[k]
			a.Name, a.Path = mask(a.Name), mask(a.Path)
		}
	}
}

// MarshalJSON encodes r with Nodes and Tests as arrays, never null.
func (r Results) MarshalJSON() ([]byte, error) {
	type plain Results // plain has no MarshalJSON method: no recursion.
	p := plain(r)
	if p.Nodes == nil {
		p.Nodes = []Node{}
	}
	if p.Tests == nil {
		p.Tests = []Test{}
	}
	return json.Marshal(p)
}

// ExitCode is the process exit code for the job: 0 if it completed with no
// failed test case, 1 if it completed with a failed case, 2 otherwise
// (incomplete, canceled or unknown status).
func (r *Results) ExitCode() int {
	if r.Job.Status != StatusComplete {
		return 2
	}
	for _, t := range r.Tests {
		if t.Result == Fail {
			return 1
		}
	}
	return 0
}

// Counts returns how many test cases of node passed and failed. An empty
// node counts the cases of all nodes.
func (r *Results) Counts(node string) (passed, failed int) {
	for _, t := range r.Tests {
		if node != "" && t.Node != node {
			continue
		}
		switch t.Result {
		case Pass:
			passed++
		case Fail:
			failed++
		}
	}
	return passed, failed
}

// Write creates dir if needed and writes dir/results.json (indented JSON),
// dir/junit.xml and the attachments of the tests at their paths. Each file
// is written to a temporary file and renamed into place, so readers never
// see a partial file.
func Write(dir string, r *Results) error {
	if r == nil {
		return errNil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results: create dir: %w", err)
	}
	for _, t := range r.Tests {
		for _, a := range t.Attachments {
			if err := writeAttachment(dir, a); err != nil {
				return err
			}
		}
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("results: encode json: %w", err)
	}
	data = append(data, '\n')
	if err := writeAtomic(filepath.Join(dir, JSONFile), func(f *os.File) error {
		_, err := f.Write(data)
		return err
	}); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, JUnitFile), func(f *os.File) error {
		return WriteJUnit(f, r)
	})
}

// writeAttachment saves a under dir at its path, which must be local and
// under AttachmentsDir (results read back from a file are not trusted).
func writeAttachment(dir string, a Attachment) error {
	p := filepath.FromSlash(a.Path)
	if !filepath.IsLocal(p) || !strings.HasPrefix(a.Path, AttachmentsDir+"/") {
		return fmt.Errorf("results: attachment %q: path %q is not under %s", a.Name, a.Path, AttachmentsDir)
	}
	full := filepath.Join(dir, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return fmt.Errorf("results: attachment %q: %w", a.Name, err)
	}
	return writeAtomic(full, func(f *os.File) error {
		_, err := f.Write(a.Data)
		return err
	})
}

// writeAtomic writes path through a temporary file in the same directory
// that is renamed over path once complete.
func writeAtomic(path string, write func(*os.File) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("results: create temp for %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return fmt.Errorf("results: write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("results: chmod %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("results: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("results: close %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("results: rename %s: %w", path, err)
	}
	return nil
}

// Read reads dir/results.json. Nodes and Tests are never nil in the result.
func Read(dir string) (*Results, error) {
	path := filepath.Join(dir, JSONFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("results: read: %w", err)
	}
	var r Results
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("results: decode %s: %w", path, err)
	}
	if r.Nodes == nil {
		r.Nodes = []Node{}
	}
	if r.Tests == nil {
		r.Tests = []Test{}
	}
	return &r, nil
}

// errNil is returned when a nil *Results is passed where one is required.
var errNil = errors.New("results: nil results")
