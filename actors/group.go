package actors

import (
	"fmt"
	"sort"
	"strings"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/coordinator"
	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/report"
)

// groupActor supervises the node actors of one job. A node that fails,
// crashes or is stopped becomes incomplete; an essential one ends the group.
type groupActor struct {
	cfg    Config
	nodes  map[string]*nodeState // by node name
	byPID  map[string]string     // node actor PID id → node name
	order  []string
	ending *endGroup
	live   int
	coord  *actor.PID
	// stillOn lists the boards that could not be verified off.
	stillOn []string
	lost    []string // nodes lost with their worker (remote.go)
	lostWhy string
}

type nodeState struct {
	node      jobs.Node
	essential bool
	action    string // current action, for error messages
	done      bool
	status    string
	err       string
	class     string
	tests     []report.Test
	pid       *actor.PID
	endReason string // what the coordinator tells the peers, if not the usual
}

func newGroupActor(cfg Config) *groupActor {
	g := &groupActor{cfg: cfg, nodes: map[string]*nodeState{}, byPID: map[string]string{}}
	for _, n := range cfg.Job.Nodes() {
		role, _ := cfg.Job.Role(n.Role)
		g.nodes[n.Name] = &nodeState{node: n, essential: role.Essential, action: "start"}
		g.order = append(g.order, n.Name)
	}
	return g
}

func (g *groupActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		var members []coordinator.Member
		for _, name := range g.order {
			members = append(members, coordinator.Member{Name: name, Role: g.nodes[name].node.Role})
		}
		cg, err := coordinator.New(members)
		if err != nil {
			// Cannot happen for a valid job; end it rather than run without coordination.
			ctx.Send(ctx.Parent(), &groupDone{status: report.StatusIncomplete, reason: fmt.Sprintf("coordinator: %v", err)})
			return
		}
		g.coord = ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return newCoordActor(g.cfg, cg) }))
		// Made once for all nodes: each would otherwise build them for
		// itself, N times N lines in an N-node job.
		shared := newGroupShared(g.cfg)
		for _, name := range g.order {
			n := g.nodes[name].node
			pid := ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
				return newNodeActor(g.cfg, n, g.coord, shared)
			}))
			g.byPID[pid.Id] = name
			g.nodes[name].pid = pid
			g.live++
		}
	case *nodePhase:
		if st := g.nodes[m.node]; st != nil && !st.done {
			st.action = m.action
			g.emit(ctx, st, m.action, "")
		}
	case *nodeDone:
		g.nodeDone(ctx, m)
	case *endGroup:
		g.end(ctx, m)
	case *actor.Terminated:
		// System messages overtake user messages: handle the end of a
		// node actor after what it sent before it stopped (nodeDone).
		ctx.Send(ctx.Self(), &nodeGone{pid: m.Who})
	case *nodeGone:
		g.terminated(ctx, m.pid)
	case *nodeCrashed:
		g.crashed(ctx, m)
	case *boardStillOn:
		g.boardStillOn(m)
	case *loseNodes:
		g.loseNodes(ctx, m)
	}
}

// boardStillOn makes the node of a board that could not be verified off
// incomplete, an infrastructure error naming the board: the job must not
// pass with a board left live.
func (g *groupActor) boardStillOn(m *boardStillOn) {
	g.stillOn = append(g.stillOn, m.board)
	g.cfg.Logger.Error("board still on after release", "board", m.board, "node", m.node, "err", m.err)
	st := g.nodes[m.node]
	if st == nil {
		return
	}
	if st.status == report.StatusComplete || st.err == "" {
		st.status, st.class, st.err = report.StatusIncomplete, report.Infrastructure, m.err.Error()
	} else {
		st.err += "; " + m.err.Error()
	}
}

// HandleFailure makes the group the supervisor of its node actors: a node
// actor that panics is stopped and its node is incomplete. The verdict is
// queued behind what the node sent before it crashed (its last nodePhase).
func (g *groupActor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason, _ interface{}) {
	if ctx, ok := sup.(actor.Context); ok {
		ctx.Send(ctx.Self(), &nodeCrashed{pid: child, reason: fmt.Sprint(reason)})
	}
	sup.StopChildren(child)
}

func (g *groupActor) crashed(ctx actor.Context, m *nodeCrashed) {
	if g.coord != nil && m.pid.Id == g.coord.Id {
		// Without its coordinator no MultiNode call can be answered:
		// end every node now rather than let calls wait out their timeouts.
		g.cfg.Logger.Error("MultiNode coordinator crashed", "job", g.cfg.Job.Name, "reason", m.reason)
		g.coord = nil
		g.end(ctx, &endGroup{status: report.StatusIncomplete, class: report.Infrastructure, nodeClass: report.JobError,
			reason: "MultiNode coordinator crashed: " + m.reason})
		return
	}
	name, ok := g.byPID[m.pid.Id]
	if !ok {
		return
	}
	st := g.nodes[name]
	if st.done {
		return
	}
	g.settle(ctx, st, report.StatusIncomplete, report.Infrastructure, fmt.Sprintf("node actor crashed during %s: %s", st.action, m.reason))
	g.cfg.Logger.Error("node actor crashed", "node", name, "reason", m.reason)
	if st.essential {
		g.end(ctx, &endGroup{
			status: report.StatusIncomplete,
			reason: fmt.Sprintf("essential node %s failed: %s", name, st.err),
			class:  st.class,
			// The others are stopped, not to blame.
			nodeClass: report.JobError,
		})
	}
}

func (g *groupActor) nodeDone(ctx actor.Context, m *nodeDone) {
	st := g.nodes[m.node]
	if st == nil || st.done {
		return
	}
	st.tests = m.tests
	g.settle(ctx, st, m.status, m.class, m.err)
	if st.status == report.StatusIncomplete && st.essential {
		g.end(ctx, &endGroup{
			status: report.StatusIncomplete,
			reason: fmt.Sprintf("essential node %s failed: %s", st.node.Name, st.err),
			class:  st.class,
			// The others are stopped, not to blame.
			nodeClass: report.JobError,
		})
	}
}

// end stops every node still running, recording why.
func (g *groupActor) end(ctx actor.Context, m *endGroup) {
	if g.ending != nil {
		return
	}
	var where []string
	for _, name := range g.order {
		st := g.nodes[name]
		if st.done {
			continue
		}
		where = append(where, fmt.Sprintf("%s in %s", name, st.action))
		class := m.class
		switch {
		case m.nodeClass != "":
			class = m.nodeClass
		case class == "": // the job's own timeout: a test's or the job's fault
			class = report.JobError
			if strings.HasPrefix(st.action, "test ") {
				class = report.TestFailure
			}
		}
		g.settle(ctx, st, m.status, class, fmt.Sprintf("%s (during %s)", m.reason, st.action))
	}
	reason := m.reason
	if len(where) > 0 {
		reason += ": " + strings.Join(where, ", ")
	}
	g.ending = &endGroup{status: m.status, reason: reason, class: m.class}
	for _, pid := range ctx.Children() {
		if g.coord == nil || pid.Id != g.coord.Id {
			ctx.Stop(pid)
		}
	}
}

func (g *groupActor) terminated(ctx actor.Context, who *actor.PID) {
	name, ok := g.byPID[who.Id]
	if !ok {
		return
	}
	delete(g.byPID, who.Id)
	g.live--
	if st := g.nodes[name]; !st.done {
		g.settle(ctx, st, report.StatusIncomplete, report.Infrastructure, fmt.Sprintf("node stopped unexpectedly during %s", st.action))
	}
	if g.live == 0 {
		ctx.Send(ctx.Parent(), g.report())
	}
}

// report sums up the group once every node actor has stopped.
func (g *groupActor) report() *groupDone {
	d := &groupDone{status: report.StatusComplete}
	for _, name := range g.order {
		st := g.nodes[name]
		d.nodes = append(d.nodes, report.Node{
			Name: name, Role: st.node.Role, Board: boardName(g.cfg, st.node),
			Status: st.status, Error: st.err, Class: st.class,
		})
		d.tests = append(d.tests, st.tests...)
		if st.status != report.StatusComplete && d.reason == "" {
			d.status = report.StatusIncomplete
			d.reason = fmt.Sprintf("%s: %s", name, st.err)
			d.class = st.class
		}
	}
	if g.ending != nil {
		d.status, d.reason, d.class = g.ending.status, g.ending.reason, g.ending.class
		if d.class == "" { // the job's timeout: a job error if it hit any node outside its tests
			d.class = report.TestFailure
			for _, name := range g.order {
				if g.nodes[name].class == report.JobError {
					d.class = report.JobError
				}
			}
		}
	}
	if len(g.lost) > 0 { // never the job's fault: retried on other boards
		d.status, d.class, d.reason = report.StatusIncomplete, report.Infrastructure, g.lostWhy
	}
	if len(g.stillOn) > 0 {
		d.stillOn = g.stillOn
		msg := fmt.Sprintf("board %s still on after release (power off not verified)", strings.Join(g.stillOn, ", "))
		if d.status == report.StatusComplete {
			d.status, d.class, d.reason = report.StatusIncomplete, report.Infrastructure, msg
		} else {
			d.reason += "; " + msg
		}
	}
	sort.SliceStable(d.tests, func(i, j int) bool { return d.tests[i].Node < d.tests[j].Node })
	return d
}

// settle records a node's final status, tells the coordinator that the
// node will never send or arrive again, and reports the change.
func (g *groupActor) settle(ctx actor.Context, st *nodeState, status, class, err string) {
	st.done, st.status, st.err, st.class = true, status, err, class
	reason := "finished its actions"
	switch status {
	case report.StatusIncomplete:
		reason = "died during " + st.action
	case report.StatusCanceled:
		reason = "was canceled during " + st.action
	}
	if st.endReason != "" {
		reason = st.endReason
	}
	if g.coord != nil {
		ctx.Send(g.coord, &nodeEnded{node: st.node.Name, reason: reason})
	}
	g.emit(ctx, st, status, err)
}

// emit reports a phase change. An Events callback that panics ends the job
// (incomplete, a job error naming the panic) and is not called again.
func (g *groupActor) emit(ctx actor.Context, st *nodeState, phase, detail string) {
	defer func() {
		if r := recover(); r != nil {
			g.cfg.Events = func(Event) {}
			g.cfg.Logger.Error("events callback panicked", "job", g.cfg.Job.Name, "reason", fmt.Sprint(r))
			ctx.Send(ctx.Self(), &endGroup{status: report.StatusIncomplete, class: report.JobError,
				reason: fmt.Sprintf("Events callback panicked: %v", r)})
		}
	}()
	g.cfg.Events(Event{
		Time: g.cfg.Clock.Now(), Job: g.cfg.Job.Name, Node: st.node.Name, Board: boardName(g.cfg, st.node),
		Phase: phase, Detail: detail,
	})
}
