package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/troupe-lab/troupe/actors"
)

// actionsFile, in a job's directory, holds the phase changes of its nodes
// (an action began, or the node ended), one JSON actionFrame a line, so
// that the job page can cut each node's log into sections per action.
const actionsFile = "actions.jsonl"

// maxActionsRead bounds what a stream reads of a job's actionsFile: a job
// has few actions per node, so a bigger file is not one the server wrote.
const maxActionsRead = 1 << 20

// actionFrame is a phase change of a node, in a job's stream and in its
// actionsFile: Phase is an action ("deploy", "boot", "test 'smoke'") or
// the node's final status; the lines of the node logged from Time on
// belong to it.
type actionFrame struct {
	Type   string    `json:"type"` // "action"
	Node   string    `json:"node"`
	Phase  string    `json:"phase"`
	Time   time.Time `json:"time"`
	Detail string    `json:"detail,omitempty"`
}

// recordAction appends e to the actionsFile in dir. One write per record
// on a file opened for appending: concurrent callers do not interleave.
func recordAction(dir string, e actors.Event) error {
	b, err := json.Marshal(actionFrame{Type: "action", Node: e.Node, Phase: e.Phase, Time: e.Time.UTC(), Detail: e.Detail})
	if err != nil {
		return fmt.Errorf("record action: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, actionsFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("record action: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("record action: %w", err)
	}
	return nil
}

// readActions returns the complete records of dir's actionsFile from byte
// offset off on, and the offset after the last of them. No file yet: none.
func readActions(dir string, off int64) ([]actionFrame, int64, error) {
	f, err := os.Open(filepath.Join(dir, actionsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, off, nil
	}
	if err != nil {
		return nil, off, fmt.Errorf("read actions: %w", err)
	}
	defer f.Close()
	if off >= maxActionsRead {
		return nil, off, nil
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, off, fmt.Errorf("read actions: %w", err)
	}
	r := bufio.NewReader(io.LimitReader(f, maxActionsRead-off))
	var out []actionFrame
	for {
		line, err := r.ReadBytes('\n')
		if err != nil { // EOF, or a record still being written: next time
			return out, off, nil
		}
		off += int64(len(line))
		var a actionFrame
		if json.Unmarshal(line, &a) == nil {
			a.Type = "action"
			out = append(out, a)
		}
	}
}
