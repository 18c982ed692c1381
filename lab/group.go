package lab

import "github.com/troupe-lab/troupe/jobs"

// Group is one running group: the nodes of one attempt of a job and the
// boards they were assigned. Boards on a network of their group's own
// (sim and QEMU boards) learn it before the first action.
type Group struct {
	// ID identifies this attempt among the running groups of one lab in
	// service; all boards of the group see the same ID.
	ID    string
	Node  string      // the node the board runs
	Nodes []jobs.Node // every node of the group, in jobs.Job.Nodes order
	// Boards: node → its board, for every node whose board is on the
	// same host as this one (a worker's boards share a network with its
	// other boards only).
	Boards map[string]Board
	// Addresses: node → the address the lab gave it ("" or missing:
	// none, as a worker's boards).
	Addresses map[string]string
}
