package actors

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/testshell"
)

// nodeActor runs one node's actions in order on its board, enforcing each
// action's timeout, and reports the node's outcome to the group.
type nodeActor struct {
	cfg      Config
	node     jobs.Node
	actions  []jobs.Action
	board    *actor.PID
	coord    *actor.PID
	current  int
	timedOut int // index of the action that timed out and was aborted; -1: none
	// atLabLimit is set when the current action's timer is the lab's own
	// limit (labLimit), not the job's timeout.
	atLabLimit bool
	stop       func() bool
	tests      []report.Test
	attached   int // bytes of the attachments kept in tests
	done       bool
	// netAddrs are the addresses of the node's board's group network
	// (JoinGroup), node → address; they take the place of
	// Config.Addresses for those nodes (addr).
	netAddrs map[string]string
	retried  map[int]int // action index → retries made
	shared   *groupShared
	host     string // a guest's host node, whose board it logs in to; "": not a guest
	counted  bool   // a guest's end is counted (hostBoards.guestEnded)
	// stopWait, closed at stop, ends a host's wait for its guests.
	stopWait chan struct{}
}

// boardNode is the node whose board this node runs on: its own, or a
// guest's host's.
func (a *nodeActor) boardNode() string {
	if a.host != "" {
		return a.host
	}
	return a.node.Name
}

// MaxNodeAttachments bounds the bytes of the attachments kept of one node
// over all its tests (each test's are bounded by testshell).
const MaxNodeAttachments = 4 * testshell.MaxRunAttachments

func newNodeActor(cfg Config, n jobs.Node, coord *actor.PID, shared *groupShared) *nodeActor {
	return &nodeActor{cfg: cfg, node: n, actions: cfg.Job.ActionsFor(n.Role), coord: coord, timedOut: -1, shared: shared}
}

// groupShared is what every node of a group reads and none changes: the
// job's nodes, the group file made from the configured addresses and the
// boards on this host. hosts (the boards of host nodes, for their guests)
// and workers (what a worker's boards are told of the group) are made as
// nodes need them, under their locks.
type groupShared struct {
	nodes     []jobs.Node
	groupFile []byte
	here      map[string]lab.Board // node → board, of the boards on this host (not on workers)
	hosts     *hostBoards
	workers   *workerGroups
}

func newGroupShared(cfg Config) *groupShared {
	nodes := cfg.Job.Nodes()
	hosts := &hostBoards{}
	for _, n := range nodes {
		if r, _ := cfg.Job.Role(n.Role); r.Guest() {
			hosts.expect(hostNode(r))
		}
	}
	here := make(map[string]lab.Board, len(cfg.Boards))
	for node, b := range cfg.Boards {
		if _, remote := cfg.Remote[node]; !remote {
			here[node] = b
		}
	}
	return &groupShared{nodes: nodes, groupFile: groupFile(nodes, func(n string) string { return cfg.Addresses[n] }), here: here,
		hosts: hosts, workers: &workerGroups{m: map[string]*workerGroup{}}}
}

func (a *nodeActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if rb, ok := a.cfg.Remote[a.node.Name]; ok {
			if isHost(a.cfg.Job, a.node.Role) {
				a.shared.hosts.setRemote(a.node.Name)
			}
			a.startRemote(ctx, rb)
			return
		}
		role, _ := a.cfg.Job.Role(a.node.Role)
		if role.Guest() {
			a.startGuest(ctx, role)
			return
		}
		b := a.cfg.Boards[a.node.Name]
		backend, err := a.cfg.Open(a.node.Name, b)
		if err != nil {
			a.finish(ctx, report.StatusIncomplete, report.Infrastructure, fmt.Sprintf("open board %s: %v", b.Name, err))
			return
		}
		if err := a.joinGroup(ctx, backend); err != nil {
			_ = backend.Close()
			a.finish(ctx, report.StatusIncomplete, report.Infrastructure, fmt.Sprintf("board %s joins the group network: %v", b.Name, err))
			return
		}
		if isHost(a.cfg.Job, a.node.Role) {
			a.shared.hosts.set(a.node.Name, backend)
		}
		mn := mnClient{root: ctx.ActorSystem().Root, coord: a.coord, node: a.node.Name, timeout: role.Timeout}
		group := ctx.Parent()
		a.board = ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
			return newBoardActor(a.cfg, a.node.Name, b, backend, mn, group)
		}))
		a.next(ctx, 0)
	case *remoteOpened:
		a.opened(ctx, m)
	case *actionResult:
		a.result(ctx, m)
	case *actionTimeout:
		// Cancel the action and wait a moment for its own error, which
		// says what it was waiting for (and the console's last output).
		if m.index == a.current && !a.done && a.timedOut < 0 {
			a.timedOut = m.index
			ctx.Send(a.board, &abortAction{index: m.index})
			self, root := ctx.Self(), ctx.ActorSystem().Root
			a.stop = a.cfg.Clock.AfterFunc(abortWait, func() { root.Send(self, &abortGrace{index: m.index}) })
		}
	case *abortGrace:
		if m.index == a.timedOut && !a.done {
			a.finish(ctx, report.StatusIncomplete, a.timeoutClass(), a.timeoutError(nil))
		}
	case *guestsEnded:
		ctx.Stop(ctx.Self())
	case *actor.Stopping:
		a.stopTimer()
		if a.stopWait != nil {
			close(a.stopWait)
			a.stopWait = nil
		}
		if a.host != "" && !a.counted {
			a.counted = true
			a.shared.hosts.guestEnded(a.host)
		}
		a.shared.hosts.drop(a.node.Name)
	}
}

// startGuest starts a guest node: its board actor drives a session on
// the host node's board (guestBoard), opened by its boot; its first
// action waits for the host role's jobs.StartMessage.
func (a *nodeActor) startGuest(ctx actor.Context, role jobs.Role) {
	host := hostNode(role)
	a.host = host
	hb := a.cfg.Boards[host]
	b := lab.Board{Name: hb.Name + "/" + a.node.Name, DeviceType: hb.DeviceType}
	backend := newGuestBoard(host, a.shared.hosts)
	mn := mnClient{root: ctx.ActorSystem().Root, coord: a.coord, node: a.node.Name, timeout: role.Timeout}
	group := ctx.Parent()
	a.board = ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return newBoardActor(a.cfg, a.node.Name, b, backend, mn, group)
	}))
	a.next(ctx, 0)
}

// HandleFailure supervises the board actor: a crash of it ends the node.
func (a *nodeActor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason, _ interface{}) {
	sup.StopChildren(child)
	if ctx, ok := sup.(actor.Context); ok && !a.done {
		a.finish(ctx, report.StatusIncomplete, report.Infrastructure, fmt.Sprintf("board actor crashed during %s: %v", describe(a.actions[a.current]), reason))
	}
}

// next starts action i, or ends the node when there is none left.
func (a *nodeActor) next(ctx actor.Context, i int) {
	a.stopTimer()
	a.current = i
	if i >= len(a.actions) {
		a.finish(ctx, report.StatusComplete, "", "")
		return
	}
	act := a.actions[i]
	ctx.Send(ctx.Parent(), &nodePhase{node: a.node.Name, action: describe(act)})
	msg := &doAction{index: i, action: act}
	if r, _ := a.cfg.Job.Role(a.node.Role); r.Guest() && i == 0 && a.retried[i] == 0 {
		msg.awaitStart = r.Host
	}
	if act.Type == jobs.Boot {
		msg.context = maps.Clone(a.cfg.Job.Context)
		if r, ok := a.cfg.Job.Role(a.node.Role); ok && len(r.Context) > 0 {
			if msg.context == nil {
				msg.context = map[string]string{}
			}
			maps.Copy(msg.context, r.Context)
		}
	}
	if act.Type == jobs.Test {
		msg.test = testshell.Test{Name: act.Name, Script: act.Run, Env: [][2]string{
			{"TROUPE_JOB", a.cfg.Job.Name},
			{"TROUPE_NODE", a.node.Name},
			{"TROUPE_ROLE", a.node.Role},
			{"TROUPE_IP", a.addr(a.boardNode())},
			{"TROUPE_BOARD", a.cfg.Boards[a.boardNode()].Name},
			// LAVA's own (its overlay's environment file): what troupe
			// has of them. Job ids are troupe's job names.
			{"LAVA_JOB_ID", a.cfg.Job.Name},
			{"LAVA_DEVICE_HOSTNAME", a.cfg.Boards[a.boardNode()].Name},
			{"LAVA_DEVICE_TYPE", a.cfg.Boards[a.boardNode()].DeviceType},
		}, Files: map[string][]byte{"group": a.groupFile()}, Fixup: act.Fixup}
		for _, k := range slices.Sorted(maps.Keys(a.cfg.Job.Secrets)) {
			msg.test.Env = append(msg.test.Env, [2]string{k, a.cfg.Job.Secrets[k]})
		}
		if act.Parse != "" {
			// jobs.Parse checked the pattern; a job built otherwise with a bad one just parses nothing.
			msg.test.Pattern, _ = regexp.Compile(act.Parse)
		}
	}
	timeout := act.Timeout
	a.atLabLimit = false
	if l := a.labLimit(act.Type); l > 0 && (timeout <= 0 || l <= timeout) {
		timeout, a.atLabLimit = l, true
	}
	if timeout > 0 {
		self, root := ctx.Self(), ctx.ActorSystem().Root
		a.stop = a.cfg.Clock.AfterFunc(timeout, func() { root.Send(self, &actionTimeout{index: i}) })
	}
	ctx.Send(a.board, msg)
}

func (a *nodeActor) result(ctx actor.Context, m *actionResult) {
	if a.done || m.index != a.current {
		return
	}
	act := a.actions[m.index]
	if a.timedOut == m.index {
		a.finish(ctx, report.StatusIncomplete, a.timeoutClass(), a.timeoutError(m.err))
		return
	}
	if m.err != nil {
		// The test script's own failures are exit codes, markers and a
		// shell it killed; any other error of the action is the board's or
		// the console's.
		class := report.Infrastructure
		if act.Type == jobs.Test && errors.Is(m.err, testshell.ErrShellDied) {
			class = report.TestFailure
		}
		msg := fmt.Sprintf("%s: %v", describe(act), m.err)
		switch {
		case errors.Is(m.err, ErrGuestNotStarted), errors.Is(m.err, ErrNoSessions):
			class = report.JobError
		case a.host != "" && a.shared.hosts.get(a.host) == nil:
			// The host's board is off: its guests' sessions end with it.
			class = report.JobError
			msg = fmt.Sprintf("host node %s ended (its board is off): %s", a.host, msg)
		}
		if class == report.Infrastructure && a.retried[m.index] < act.Retries {
			// Again, as LAVA's failure_retry: its MultiNode calls were made.
			if a.retried == nil {
				a.retried = map[int]int{}
			}
			a.retried[m.index]++
			a.actions[m.index].Before = nil
			ctx.Send(ctx.Parent(), &nodePhase{node: a.node.Name, action: fmt.Sprintf("%s failed (%v): retry %d of %d", describe(act), m.err, a.retried[m.index], act.Retries)})
			a.next(ctx, m.index)
			return
		}
		a.finish(ctx, report.StatusIncomplete, class, msg)
		return
	}
	if act.Type == jobs.Test {
		a.record(act, m.outcome)
		if m.outcome.Raised != "" {
			a.finish(ctx, report.StatusIncomplete, report.TestFailure, fmt.Sprintf("%s raised: %s", describe(act), m.outcome.Raised))
			return
		}
	}
	a.next(ctx, m.index+1)
}

// record turns a test's outcome into result cases: the ones it reported,
// and one in suite "troupe" named after the action, pass iff it exited 0.
// An attachment goes with the last case of its name the test reported,
// or, if there is none, with that "troupe" case.
func (a *nodeActor) record(act jobs.Action, o testshell.Outcome) {
	first := len(a.tests)
	for _, msg := range o.Invalid {
		a.cfg.Logger.Warn("malformed result marker not counted", "node", a.node.Name, "test", act.Name, "problem", msg)
	}
	for _, c := range o.Cases {
		a.tests = append(a.tests, report.Test{
			Node: a.node.Name, Role: a.node.Role, Suite: act.Name, Name: c.Name,
			Result: c.Result, Measurement: c.Measurement, Units: c.Units, Set: c.Set, Reference: c.Reference,
		})
	}
	r := report.Pass
	if o.ExitCode != 0 {
		r = report.Fail
	}
	a.tests = append(a.tests, report.Test{Node: a.node.Name, Role: a.node.Role, Suite: "troupe", Name: act.Name, Result: r})
	for _, at := range o.Attachments {
		if a.attached+len(at.Data) > MaxNodeAttachments {
			a.cfg.Logger.Warn("attachment not kept: the node's attachments are bounded", "node", a.node.Name, "test", act.Name,
				"case", at.Case, "file", at.Name, "limit", MaxNodeAttachments)
			continue
		}
		a.attached += len(at.Data)
		i := len(a.tests) - 1
		for j := i - 1; j >= first; j-- {
			if a.tests[j].Name == at.Case {
				i = j
				break
			}
		}
		t := &a.tests[i]
		t.Attachments = append(t.Attachments, report.NewAttachment(t.Node, t.Suite, t.Name, at.Name, at.MimeType, at.Data))
	}
}

// finish reports the node's outcome and stops it; stopping the node stops
// its board actor, which powers the board off.
func (a *nodeActor) finish(ctx actor.Context, status, class, err string) {
	if a.done {
		return
	}
	a.done = true
	a.stopTimer()
	ctx.Send(ctx.Parent(), &nodeDone{node: a.node.Name, status: status, err: err, class: class, tests: a.tests})
	if idle := a.shared.hosts.idle(a.node.Name); idle != nil && status == report.StatusComplete {
		// A host that ended well keeps its board on for its guests still
		// running there (each bounded by its own timeouts and the job's).
		self, root, quit := ctx.Self(), ctx.ActorSystem().Root, make(chan struct{})
		a.stopWait = quit
		go func() {
			select {
			case <-idle:
				root.Send(self, &guestsEnded{})
			case <-quit:
			}
		}()
		return
	}
	ctx.Stop(ctx.Self())
}

// joinGroup puts a networked board on its group's network, shared with
// the group's boards on this host (not those on workers); the addresses
// it reports replace the configured ones of those nodes.
func (a *nodeActor) joinGroup(ctx actor.Context, backend Backend) error {
	n, ok := backend.(Networked)
	if !ok {
		return nil
	}
	addrs, err := n.JoinGroup(lab.Group{ID: ctx.Parent().String(), Node: a.node.Name, Nodes: a.shared.nodes, Boards: a.shared.here, Addresses: a.cfg.Addresses})
	if err != nil {
		return err
	}
	a.netAddrs = addrs
	return nil
}

// addr is node's address: on the node's board's group network if it has
// one there, else the configured one.
func (a *nodeActor) addr(node string) string {
	if v, ok := a.netAddrs[node]; ok {
		return v
	}
	return a.cfg.Addresses[node]
}

func (a *nodeActor) stopTimer() {
	if a.stop != nil {
		a.stop()
		a.stop = nil
	}
}

// groupFile lists every node of the group for the helpers (troupe-group,
// troupe-role list, troupe-network query): "name<TAB>role<TAB>address" lines.
func (a *nodeActor) groupFile() []byte {
	if len(a.netAddrs) == 0 {
		return a.shared.groupFile
	}
	return groupFile(a.shared.nodes, a.addr)
}

func groupFile(nodes []jobs.Node, addr func(node string) string) []byte {
	var b strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&b, "%s\t%s\t%s\n", n.Name, n.Role, addr(n.Name))
	}
	return []byte(b.String())
}

// abortWait is how long a timed-out action may take to report why.
const abortWait = 2 * time.Second

// timeoutError describes the current action's timeout, with what the
// action itself said when it was canceled, if anything.
func (a *nodeActor) timeoutError(err error) string {
	act := a.actions[a.current]
	msg := fmt.Sprintf("%s timed out after %s", describe(act), act.Timeout)
	if a.atLabLimit {
		msg = fmt.Sprintf("%s did not finish within the lab's limit of %s", describe(act), a.labLimit(act.Type))
	}
	if err != nil {
		msg += ": " + err.Error()
	}
	return msg
}

// labLimit is the lab's own limit on a deploy or boot (0: none): one that
// does not end within it is the board's fault. A shorter timeout the job
// sets itself is the job's.
func (a *nodeActor) labLimit(t jobs.ActionType) time.Duration {
	pick := func(lim, def time.Duration) time.Duration {
		if lim > 0 {
			return lim
		}
		return def
	}
	switch t {
	case jobs.Deploy:
		return pick(a.cfg.DeployLimit, jobs.DefaultDeployTimeout)
	case jobs.Boot:
		return pick(a.cfg.BootLimit, jobs.DefaultBootTimeout)
	}
	return 0
}

// timeoutClass tells whose fault it is that the current action did not
// finish in time: the board's only at the lab's own limit; a timeout the
// job set is the job's (a test's, for a test).
func (a *nodeActor) timeoutClass() string {
	switch {
	case a.atLabLimit:
		return report.Infrastructure
	case a.actions[a.current].Type == jobs.Test:
		return report.TestFailure
	}
	return report.JobError
}

func describe(act jobs.Action) string {
	if act.Type == jobs.Test {
		return fmt.Sprintf("test '%s'", act.Name)
	}
	return string(act.Type)
}
