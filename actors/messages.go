package actors

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/report"
	"github.com/troupe-lab/troupe/testshell"
)

// Messages between the actors of one job. They never leave the process.

// cancelJob asks the job actor to end the job as canceled.
type cancelJob struct{ reason string }

// jobTimeout fires when the whole job has run out of time.
type jobTimeout struct{}

// endGroup asks the group actor to stop every node that is still running.
type endGroup struct {
	status string // report.StatusIncomplete or report.StatusCanceled
	reason string
	class  string // of the error; "" (the job's timeout): each node's by the action it was in
	// nodeClass, if set, is the class of the nodes it stops (when they
	// are not to blame, e.g. their coordinator crashed).
	nodeClass string
}

// groupDone is the group's final report to its job, sent once every node
// actor (and so every board actor) has stopped and every board is off.
type groupDone struct {
	status string
	reason string
	class  string
	nodes  []report.Node
	tests  []report.Test
	// stillOn lists the boards that could not be verified off.
	stillOn []string
}

// nodePhase reports that a node started an action.
type nodePhase struct {
	node   string
	action string // e.g. "boot", "test 'serve'"
}

// nodeDone is a node's final report to its group.
type nodeDone struct {
	node   string
	status string
	err    string
	class  string
	tests  []report.Test
}

// nodeGone is the group's own note that a node actor has terminated,
// queued behind the messages the node sent before.
type nodeGone struct{ pid *actor.PID }

// nodeCrashed is the group's own note that a node actor panicked.
type nodeCrashed struct {
	pid    *actor.PID
	reason string
}

// actionTimeout fires when the node's current action ran out of time.
type actionTimeout struct{ index int }

// abortAction asks the board actor to cancel the running action; it
// answers with the action's result (its error says what it waited for).
type abortAction struct{ index int }

// abortGrace ends the wait for an aborted action's result.
type abortGrace struct{ index int }

// doAction asks the board actor to perform one action.
type doAction struct {
	index   int
	action  jobs.Action
	test    testshell.Test
	context map[string]string // boot: the job's context with the role's
	// awaitStart (a guest's first action): the host role whose
	// jobs.StartMessage the board waits for before anything else.
	awaitStart string
}

// actionResult is the board actor's answer to doAction.
type actionResult struct {
	index   int
	outcome testshell.Outcome // tests only
	err     error
}
