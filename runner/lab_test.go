package runner

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/logbook"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/sim"
)

func simLab(sandbox string) *lab.Lab {
	return &lab.Lab{File: "lab.toml", Retries: 0, BadAfter: 3, Sandbox: sandbox,
		Boards: []lab.Board{{Name: "sim-0", DeviceType: "sim", Backend: lab.Sim}}}
}

func TestStartLabStopsWhenTheKernelRefusesSandboxes(t *testing.T) {
	refused := errors.New("sim boards run in sandboxes ... (user.max_user_namespaces=0): operation not permitted")
	_, err := StartService(simLab(""), ServiceOptions{CheckSandbox: func() error { return refused }})
	require.ErrorIs(t, err, refused)
	assert.Contains(t, err.Error(), "lab lab.toml")

	// A lab without sim boards needs no sandbox.
	hw := &lab.Lab{File: "hw.toml", Boards: []lab.Board{{Name: "q", DeviceType: "qemu", Backend: lab.QemuBackend}}}
	l, err := StartService(hw, ServiceOptions{CheckSandbox: func() error { return refused }})
	require.NoError(t, err)
	require.NoError(t, l.Close())
}

func TestStartLabUnsandboxedWarns(t *testing.T) {
	var logs bytes.Buffer
	checked := false
	l, err := StartService(simLab(lab.SandboxNone), ServiceOptions{
		Options:      Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))},
		CheckSandbox: func() error { checked = true; return errors.New("refused") },
	})
	require.NoError(t, err)
	require.NoError(t, l.Close())
	assert.False(t, checked, "sandbox = \"none\" asks for no sandbox")
	assert.Contains(t, logs.String(), "level=WARN")
	assert.Contains(t, logs.String(), `sim boards are not sandboxed (lab sandbox = \"none\")`)
}

// slowBoard is a sim board whose release takes longer than the actor
// system waits for the lab to stop (10 s), like a board whose action is
// stuck and whose power off then takes its full time.
type slowBoard struct {
	*sim.Board
}

func (b *slowBoard) Close() error {
	time.Sleep(11 * time.Second) // the slow release being simulated, not a wait for an event
	return b.Board.Close()
}

func TestCloseWaitsForBoardsReleased(t *testing.T) {
	var board atomic.Pointer[slowBoard]
	l, err := StartService(simLab(""), ServiceOptions{Options: Options{
		Open: func(_ string, b lab.Board, dir string) (actors.Backend, error) {
			sb, err := sim.New(sim.Options{Name: b.Name, Dir: dir})
			if err != nil {
				return nil, err
			}
			s := &slowBoard{Board: sb}
			board.Store(s)
			return s, nil
		},
	}})
	require.NoError(t, err)
	work := l.work
	j, err := jobs.Parse("job.toml", []byte(`name = "long"
timeout = "5m"
[roles.node]
device_type = "sim"
[[action]]
type = "boot"
[[action]]
type = "test"
name = "forever"
run = "sleep 600"
`))
	require.NoError(t, err)
	book, err := logbook.New(t.TempDir(), nil)
	require.NoError(t, err)
	defer book.Close()
	l.Submit(actors.Submission{Job: j, Book: book, Done: func(*report.Results) {}})
	require.Eventually(t, func() bool {
		b := board.Load()
		if b == nil {
			return false
		}
		on, err := b.State(context.Background())
		return err == nil && on
	}, 30*time.Second, 20*time.Millisecond, "the job's board never powered on")

	require.NoError(t, l.Close())
	// The sim board says it is released at the end of its Close, after
	// the slow part (a flag set after its Close returned raced with the
	// Service's Close returning).
	select {
	case <-board.Load().Released():
	default:
		t.Error("Close returned before the board was released")
	}
	assert.NoDirExists(t, filepath.Join(work, "sim-0"), "the work directory is removed after the release")
}
