package runner

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/backend"
	"github.com/troupe-lab/troupe/hardware"
	"github.com/troupe-lab/troupe/hardware/tftp"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/qemu"
	"github.com/troupe-lab/troupe/sim"
)

// ServiceOptions tune a lab in service.
type ServiceOptions struct {
	Options
	// Out is where health-check runs write their results, one directory
	// each.
	Out string
	// Work is where the boards' sandboxes and the TFTP root go; empty: a
	// temporary directory removed by Close.
	Work string
	// CheckSandbox tells whether sim boards can be sandboxed here (the
	// lab's sandbox is not "none"); nil: sim.CheckSandbox.
	CheckSandbox func() error
	// System is the actor system to run the lab in (the server's, with
	// protoactor remote started for its workers); nil: one of its own.
	System *actor.ActorSystem
	// Workers: boards may join from workers (actors.LabConfig.Workers).
	Workers bool
}

// Service is a lab in service: an actor system with the lab's scheduler
// (the lab actor), the boards' sandboxes and, when a board deploys over
// TFTP, the TFTP server. RunMany uses one for its jobs; the server keeps
// one for its lifetime. (lab.Lab is the lab file; the lab actor schedules.)
type Service struct {
	*actors.Lab
	system    *actor.ActorSystem
	ownSystem bool
	work      string
	tempWork  bool
	stopTFTP  func()
	logger    *slog.Logger

	mu     sync.Mutex
	boards []releaser // every sim board opened, to wait for at Close
}

// releaser is a board that tells when it has been released (sim.Board).
type releaser interface{ Released() <-chan struct{} }

// releaseBound bounds how long Close waits for the boards to be released
// (a board's release takes up to about 11 s: a stuck action, then power
// off), after the lab actor has stopped.
const releaseBound = 30 * time.Second

// StartService puts l in service.
func StartService(l *lab.Lab, opts ServiceOptions) (*Service, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	unsandboxed := l.Sandbox == lab.SandboxNone
	if hasSim(l) {
		if unsandboxed {
			opts.Logger.Warn("sim boards are not sandboxed (lab sandbox = \"none\"): their test scripts run as this process's user and can reach all it can", "lab", l.File)
		} else {
			check := opts.CheckSandbox
			if check == nil {
				check = sim.CheckSandbox
			}
			if err := check(); err != nil {
				return nil, fmt.Errorf("lab %s: %w", l.File, err)
			}
		}
	}
	work, temp := opts.Work, opts.Work == ""
	if temp {
		var err error
		if work, err = os.MkdirTemp("", "troupe-"); err != nil {
			return nil, fmt.Errorf("board sandboxes: %w", err)
		}
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, fmt.Errorf("board sandboxes: %w", err)
	}
	if err := sim.SpreadBoards(work); err != nil {
		opts.Logger.Debug("boards' directories not spread", "err", err)
	}
	hwOpts, stopTFTP, err := startTFTP(l, filepath.Join(work, "tftp"), opts.Logger)
	if err != nil {
		if temp {
			os.RemoveAll(work)
		}
		return nil, err
	}
	system, ownSystem := opts.System, opts.System == nil
	if ownSystem {
		system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
			return opts.Logger.With("lib", "protoactor")
		}))
	}
	open := opts.Open
	if open == nil {
		logger := opts.Logger
		networks := qemu.NewNetworks(logger) // private networks of the QEMU boards' groups
		simNets := sim.NewNetworks()         // and of the sim boards' groups
		open = func(_ string, b lab.Board, dir string) (actors.Backend, error) {
			return backend.Open(b, backend.Env{Dir: dir, Hardware: hwOpts, Networks: networks, SimNetworks: simNets, Unsandboxed: unsandboxed, SimLimits: sim.LabLimits(l), Logger: logger})
		}
	}
	rl := &Service{system: system, ownSystem: ownSystem, work: work, tempWork: temp, stopTFTP: stopTFTP, logger: opts.Logger}
	la := actors.StartLab(system, actors.LabConfig{
		Lab: l,
		Open: func(node string, b lab.Board) (actors.Backend, error) {
			be, err := open(node, b, filepath.Join(work, b.Name))
			if r, ok := be.(releaser); ok && err == nil {
				rl.track(r)
			}
			return be, err
		},
		HealthChanged:      opts.HealthChanged,
		ReservationChanged: opts.ReservationChanged,
		Addresses:          loopbackAddresses(l),
		Clock:              opts.Clock,
		Logger:             opts.Logger,
		Retries:            l.Retries,
		BadAfter:           l.BadAfter,
		HealthOut:          opts.Out,
		Events:             opts.Events,
		Workers:            opts.Workers,
	})
	rl.Lab = la
	return rl, nil
}

// hasSim tells whether l has a sim board.
func hasSim(l *lab.Lab) bool {
	for _, b := range l.Boards {
		if b.Backend == lab.Sim {
			return true
		}
	}
	return false
}

// Close stops the lab: running jobs and health checks end with their
// boards powered off, then the TFTP server and the actor system stop and a
// temporary work directory is removed. It waits (up to releaseBound) for
// every sim board to be released, however long the lab actor's stop took;
// when one is not, the work directory stays.
func (l *Service) Close() error {
	err := l.Lab.Stop()
	released := l.waitReleased(time.Now().Add(releaseBound))
	if released == nil && errors.Is(err, actor.ErrTimeout) {
		// The stop outlasted protoactor's wait, but every board is
		// released now.
		l.logger.Debug("lab stop took longer than the actor system waits", "err", err)
		err = nil
	}
	err = errors.Join(err, released)
	if l.ownSystem {
		l.system.Shutdown()
	}
	l.stopTFTP()
	if l.tempWork && released == nil {
		err = errors.Join(err, os.RemoveAll(l.work))
	}
	return err
}

// track adds r to the boards Close waits for, dropping those released.
func (l *Service) track(r releaser) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kept := l.boards[:0]
	for _, b := range l.boards {
		select {
		case <-b.Released():
		default:
			kept = append(kept, b)
		}
	}
	l.boards = append(kept, r)
}

// waitReleased waits until every sim board opened has been released, or
// deadline.
func (l *Service) waitReleased(deadline time.Time) error {
	l.mu.Lock()
	boards := append([]releaser(nil), l.boards...)
	l.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for i, b := range boards {
		select {
		case <-b.Released():
		case <-t.C:
			return fmt.Errorf("stop lab: %d of %d sim boards not released after %v; their sandboxes stay in %s", len(boards)-i, len(boards), releaseBound, l.work)
		}
	}
	return nil
}

// builtinLab has a sim board for every node of every job, so that all of
// them can run at once.
func builtinLab(js []*jobs.Job) *lab.Lab {
	l := &lab.Lab{File: "built-in", Retries: lab.DefaultRetries, BadAfter: lab.DefaultBadAfter}
	for _, j := range js {
		for _, b := range lab.ForJob(j).Boards {
			b.Name = fmt.Sprintf("sim-%d", len(l.Boards))
			l.Boards = append(l.Boards, b)
		}
	}
	return l
}

// loopbackAddresses gives every board an address of its own in
// 127.0.0.0/8: 127.N.x.y with y.x counting the board's place in the lab, and
// N picked at random per run so that runs side by side rarely collide.
func loopbackAddresses(l *lab.Lab) map[string]string {
	n := 2 + rand.IntN(250)
	addrs := map[string]string{}
	for i, b := range l.Boards {
		addrs[b.Name] = fmt.Sprintf("127.%d.%d.%d", n, i/250, i%250+1)
	}
	return addrs
}

// startTFTP starts the lab's TFTP server when a board deploys over TFTP,
// serving root.
func startTFTP(l *lab.Lab, root string, logger *slog.Logger) (hardware.Options, func(), error) {
	opts := hardware.Options{Logger: logger}
	needed := false
	for _, b := range l.Boards {
		needed = needed || (b.Hardware != nil && b.Hardware.Deploy.Method == "tftp")
	}
	if !needed {
		return opts, func() {}, nil
	}
	addr := l.TFTP.Address
	if addr == "" {
		addr = "0.0.0.0:69"
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return opts, nil, fmt.Errorf("tftp root: %w", err)
	}
	srv, err := tftp.Listen(addr, root, logger)
	if err != nil {
		return opts, nil, fmt.Errorf("tftp server of lab %s: %w", l.File, err)
	}
	opts.TFTPRoot, opts.ServerIP = root, l.TFTP.ServerIP
	if opts.ServerIP == "" {
		host, port, _ := net.SplitHostPort(srv.Addr())
		opts.ServerIP = host
		if port != "69" {
			opts.ServerIP = srv.Addr()
		}
	}
	return opts, func() { _ = srv.Close() }, nil
}
