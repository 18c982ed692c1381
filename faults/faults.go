// Package faults applies a scenario's fault plan to the simulated boards of
// a run. Faults are a knob of the sim backend only: the harness sees a board
// that misbehaves and must react as it would to a real one. Boot-time faults
// are set on a board before it powers on; the others fire when their
// trigger is seen — a node entering deploy, boot or a test (from the
// harness's progress events), or a console line matching a regex — after
// their delay.
package faults

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/troupe-lab/troupe/actors"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/scenario"
	"github.com/troupe-lab/troupe/sim"
)

// Injector fires the faults of one plan on the boards of one run.
type Injector struct {
	plan scenario.Plan
	log  func(string)
	// Boards are opened with these sandbox settings: the group networks
	// of the run and, for a lab with sandbox = "none", no sandbox.
	networks    *sim.Networks
	unsandboxed bool
	limits      sim.Limits

	mu      sync.Mutex
	boards  map[string]*sim.Board // by node
	config  map[string]sim.Faults // by node: the board-level settings so far
	fired   []bool
	firstAt time.Time
	timers  []*time.Timer
	stopped bool
}

// New returns an injector for plan on the boards of lab l; log (may be
// nil) is told of every fault as it fires.
func New(plan scenario.Plan, l *lab.Lab, log func(string)) *Injector {
	if log == nil {
		log = func(string) {}
	}
	return &Injector{plan: plan, log: log, boards: map[string]*sim.Board{}, config: map[string]sim.Faults{},
		fired: make([]bool, len(plan.Faults)), networks: sim.NewNetworks(), unsandboxed: l.Sandbox == lab.SandboxNone, limits: sim.LabLimits(l)}
}

// staticKinds are set on the board itself; with the boot trigger, before
// it powers on.
var staticKinds = map[string]bool{
	"boot-hang": true, "slow-boot": true, "no-login-prompt": true, "power-fail": true,
	"power-lie": true, "deploy-fail": true, "console-noise": true, "console-drop": true, "console-slow": true,
}

// Open makes a simulated board for node and arms the faults aimed at it.
func (in *Injector) Open(node string, b lab.Board, dir string) (actors.Backend, error) {
	sb, err := sim.New(sim.Options{Name: b.Name, Dir: dir, Networks: in.networks, Unsandboxed: in.unsandboxed, Limits: in.limits})
	if err != nil {
		return nil, err
	}
	in.mu.Lock()
	in.boards[node] = sb
	var console []int
	faults := sim.Faults{}
	for i, f := range in.plan.Faults {
		if !in.aims(f, node, b.Name) {
			continue
		}
		switch {
		case strings.HasPrefix(f.When, "console:"):
			console = append(console, i)
		case (f.When == "boot" && (staticKinds[f.Kind] || f.Kind == "kernel-panic")) ||
			f.Kind == "deploy-fail": // it only acts on a deploy: armed from the start, no race with it
			set(&faults, f, true)
			in.markLocked(i, node)
		case f.When == "boot":
			in.armLocked(i, node)
		}
	}
	in.config[node] = faults
	in.mu.Unlock()
	sb.SetFaults(faults)
	if len(console) == 0 {
		return sb, nil
	}
	return &watched{Board: sb, con: in.watch(sb.Console(), node, console)}, nil
}

// Event takes the harness's progress events: a node entering an action
// is the trigger of the faults waiting for it.
func (in *Injector) Event(e actors.Event) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for i, f := range in.plan.Faults {
		if in.fired[i] || !in.aims(f, e.Node, e.Board) || in.boards[e.Node] == nil {
			continue
		}
		if (f.When == "deploy" && e.Phase == "deploy") ||
			(strings.HasPrefix(f.When, "test:") && e.Phase == fmt.Sprintf("test '%s'", strings.TrimPrefix(f.When, "test:"))) {
			in.armLocked(i, e.Node)
		}
	}
}

// FiredAt is when the first fault fired (zero if none did).
func (in *Injector) FiredAt() time.Time {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.firstAt
}

// Stop cancels the faults that have not fired yet.
func (in *Injector) Stop() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.stopped = true
	for _, t := range in.timers {
		t.Stop()
	}
}

func (in *Injector) aims(f scenario.PlannedFault, node, board string) bool {
	if f.Board != "" {
		return f.Board == board
	}
	return f.Node == node
}

// armLocked fires fault i on node's board after its delay.
func (in *Injector) armLocked(i int, node string) {
	if in.fired[i] || in.stopped {
		return
	}
	in.fired[i] = true
	f, b := in.plan.Faults[i], in.boards[node]
	in.timers = append(in.timers, time.AfterFunc(f.After, func() {
		in.mu.Lock()
		if in.stopped {
			in.mu.Unlock()
			return
		}
		in.markLocked(i, node)
		cfg := in.config[node]
		set(&cfg, f, false)
		in.config[node] = cfg
		in.mu.Unlock()
		fire(b, f, cfg)
	}))
}

// markLocked records that fault i took effect now.
func (in *Injector) markLocked(i int, node string) {
	in.fired[i] = true
	if in.firstAt.IsZero() {
		in.firstAt = time.Now()
	}
	f := in.plan.Faults[i]
	in.log(fmt.Sprintf("fault: %s on %s (%s)", f.Kind, node, f.When))
}

// fire makes fault f happen on board b now; cfg is the board's settings
// with f's included.
func fire(b *sim.Board, f scenario.PlannedFault, cfg sim.Faults) {
	switch f.Kind {
	case "kernel-panic":
		b.KernelPanic()
	case "power-loss":
		b.PowerLoss()
	case "shell-hang":
		b.ShellHang()
	case "console-disconnect":
		d := f.Duration
		if d == 0 {
			d = -1
		}
		b.Disconnect(d)
	default:
		b.SetFaults(cfg)
	}
}

// set adds the board-level setting of f to fs.
func set(fs *sim.Faults, f scenario.PlannedFault, atBoot bool) {
	fs.Seed = f.Seed
	switch f.Kind {
	case "boot-hang":
		fs.BootHang = true
	case "slow-boot":
		fs.SlowBoot = f.Duration
	case "no-login-prompt":
		fs.NoLoginPrompt = true
	case "kernel-panic":
		fs.PanicAtBoot = atBoot
	case "power-fail":
		fs.PowerFail = true
	case "power-lie":
		fs.PowerLie = true
	case "deploy-fail":
		fs.DeployFail = true
	case "console-noise":
		fs.NoiseRate = f.Rate
	case "console-drop":
		fs.DropProb = f.Probability
	case "console-slow":
		fs.Baud = f.Baud
	}
}

// watched is a sim board whose console output is also scanned for the
// console triggers of faults.
type watched struct {
	*sim.Board
	con io.ReadWriteCloser
}

func (w *watched) Console() io.ReadWriteCloser { return w.con }

// watch returns a console that passes everything through and arms the
// faults whose regex matches a line the harness reads.
func (in *Injector) watch(con io.ReadWriteCloser, node string, faults []int) io.ReadWriteCloser {
	pr, pw := io.Pipe()
	res := make([]*regexp.Regexp, len(faults))
	for k, i := range faults {
		res[k] = regexp.MustCompile(strings.TrimPrefix(in.plan.Faults[i].When, "console:")) // validated by scenario.Parse
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			for k, re := range res {
				if re.Match(sc.Bytes()) {
					in.mu.Lock()
					in.armLocked(faults[k], node)
					in.mu.Unlock()
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	return &tee{ReadWriteCloser: con, w: pw}
}

// tee copies what is read from the console to w.
type tee struct {
	io.ReadWriteCloser
	w *io.PipeWriter
}

func (t *tee) Read(p []byte) (int, error) {
	n, err := t.ReadWriteCloser.Read(p)
	if n > 0 {
		_, _ = t.w.Write(p[:n])
	}
	return n, err
}

func (t *tee) Close() error {
	_ = t.w.Close()
	return t.ReadWriteCloser.Close()
}
