package faults

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/scenario"
)

func plan(fs ...scenario.PlannedFault) scenario.Plan { return scenario.Plan{Seed: 1, Faults: fs} }

func pf(node, kind, when string) scenario.PlannedFault {
	return scenario.PlannedFault{Fault: scenario.Fault{Node: node, Kind: kind, When: when}, Node: node, Seed: 7}
}

func TestTriggers(t *testing.T) {
	var log []string
	in := New(plan(pf("a-0", "power-loss", "test:work"), pf("b-0", "shell-hang", "deploy")), &lab.Lab{}, func(s string) { log = append(log, s) })
	defer in.Stop()
	dir := t.TempDir()
	for _, n := range []string{"a-0", "b-0"} {
		be, err := in.Open(n, lab.Board{Name: "sim-" + n}, filepath.Join(dir, n))
		require.NoError(t, err)
		defer be.Close()
	}
	// Not the trigger: another phase, another node.
	in.Event(actors.Event{Node: "a-0", Board: "sim-a-0", Phase: "boot"})
	in.Event(actors.Event{Node: "b-0", Board: "sim-b-0", Phase: "test 'work'"})
	assert.True(t, in.FiredAt().IsZero())
	// The trigger of a-0's fault.
	in.Event(actors.Event{Node: "a-0", Board: "sim-a-0", Phase: "test 'work'"})
	require.Eventually(t, func() bool { return !in.FiredAt().IsZero() }, 5*time.Second, 10*time.Millisecond)
	in.Stop()
	assert.Equal(t, []string{"fault: power-loss on a-0 (test:work)"}, log)
}

func TestBootFaultsAreSetBeforePowerOn(t *testing.T) {
	in := New(plan(pf("a-0", "boot-hang", "boot")), &lab.Lab{}, nil)
	defer in.Stop()
	be, err := in.Open("a-0", lab.Board{Name: "sim-a"}, t.TempDir())
	require.NoError(t, err)
	defer be.Close()
	assert.False(t, in.FiredAt().IsZero(), "a boot fault takes effect when the board is opened")
}

func TestConsoleTrigger(t *testing.T) {
	f := pf("a-0", "kernel-panic", "console:READY [0-9]+")
	f.After = time.Hour // armed by the line; Stop cancels it before it fires
	in := New(plan(f), &lab.Lab{}, nil)
	defer in.Stop()
	src := &pipeConsole{}
	src.r, src.w = io.Pipe()
	con := in.watch(src, "a-0", []int{0})
	go func() {
		_, _ = src.w.Write([]byte("booting\nREADY 42\n"))
		_ = src.w.Close()
	}()
	var got bytes.Buffer
	_, _ = io.Copy(&got, con)
	assert.Equal(t, "booting\nREADY 42\n", got.String(), "the console passes everything through")
	require.Eventually(t, func() bool {
		in.mu.Lock()
		defer in.mu.Unlock()
		return in.fired[0]
	}, 5*time.Second, 10*time.Millisecond)
	_ = con.Close()
}

type pipeConsole struct {
	r *io.PipeReader
	w *io.PipeWriter
}

func (p *pipeConsole) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipeConsole) Write(b []byte) (int, error) { return len(b), nil }
func (p *pipeConsole) Close() error                { return p.r.Close() }
