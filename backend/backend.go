// Package backend maps each backend kind a lab file may name (lab.Sim,
// lab.QemuBackend, lab.HardwareBackend; package lab checks the kind and
// reads its part of the lab file) to how a board of that kind is opened and
// how a board a dead harness left on is powered off. `troupe run` (package
// runner) and the server use this one table; it sits above the backends
// (sim, qemu, hardware), which never import it.
package backend

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/hardware"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/qemu"
	"github.com/troupe-lab/troupe/sim"
)

// Env is what opening a board needs besides the board.
type Env struct {
	Dir      string           // the board's own directory (its sandbox)
	Hardware hardware.Options // the lab's TFTP server, for real boards
	Networks *qemu.Networks   // the run's group networks, for QEMU boards
	// SimNetworks are the run's group networks of sim boards.
	SimNetworks *sim.Networks
	// SimLimits bound each sandboxed sim board (zero: the defaults).
	SimLimits sim.Limits
	// Unsandboxed runs sim boards without namespaces (lab sandbox = "none").
	Unsandboxed bool
	Logger      *slog.Logger // nil: discard
}

// Kind is how boards of one backend kind are handled.
type Kind struct {
	// Open makes the backend of board b.
	Open func(b lab.Board, env Env) (actors.Backend, error)
	// PowerOffLeftover powers off board b, whose directory is dir, if a
	// harness killed with it on left it on.
	PowerOffLeftover func(ctx context.Context, b lab.Board, dir string) error
}

// kinds has an entry for every kind in lab.Backends() (TestEveryLabKind).
var kinds = map[string]Kind{
	lab.Sim: {
		Open: func(b lab.Board, env Env) (actors.Backend, error) {
			return sim.New(sim.Options{Name: b.Name, Dir: env.Dir, Logger: env.Logger, Networks: env.SimNetworks, Unsandboxed: env.Unsandboxed, StandIn: b.StandIn, Limits: env.SimLimits})
		},
		PowerOffLeftover: func(_ context.Context, _ lab.Board, dir string) error {
			return sim.PowerOffLeftover(dir)
		},
	},
	lab.QemuBackend: {
		Open: func(b lab.Board, env Env) (actors.Backend, error) {
			return qemu.Open(b, qemu.Options{Networks: env.Networks, Dir: env.Dir, Logger: env.Logger})
		},
		PowerOffLeftover: func(ctx context.Context, _ lab.Board, dir string) error {
			return qemu.PowerOffLeftover(ctx, dir)
		},
	},
	lab.HardwareBackend: {
		Open: func(b lab.Board, env Env) (actors.Backend, error) {
			opts := env.Hardware
			if opts.Logger == nil {
				opts.Logger = env.Logger
			}
			return hardware.Open(b, opts)
		},
		// A real board is switched off by its power switch, whatever
		// state it was left in ("manual" power: nothing to do).
		PowerOffLeftover: func(ctx context.Context, b lab.Board, _ string) error {
			sw, err := hardware.PowerSwitch(b)
			if err != nil || sw == nil {
				return err
			}
			return sw.Off(ctx)
		},
	},
}

func kind(b lab.Board) (Kind, error) {
	k, ok := kinds[b.Backend]
	if !ok {
		return Kind{}, fmt.Errorf("board %s: unknown backend %q", b.Name, b.Backend)
	}
	return k, nil
}

// Open makes the backend of board b.
func Open(b lab.Board, env Env) (actors.Backend, error) {
	k, err := kind(b)
	if err != nil {
		return nil, err
	}
	return k.Open(b, env)
}

// PowerOffLeftover powers off board b (its directory: dir) if a harness
// killed with it on left it on.
func PowerOffLeftover(ctx context.Context, b lab.Board, dir string) error {
	k, err := kind(b)
	if err != nil {
		return err
	}
	return k.PowerOffLeftover(ctx, b, dir)
}
