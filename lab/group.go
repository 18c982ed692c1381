package lab

import "github.com/troupe-lab/troupe/jobs"

// Group is one running group: the nodes of one attempt of a job and the
// boards they were assigned. Boards on a network of their group's own
// (QEMU boards) learn it before the first action.
type Group struct {
	// ID identifies this attempt among the running groups of one lab in
	// service; all boards of the group see the same ID.
	ID     string
	Node   string           // the node the board runs
	Nodes  []jobs.Node      // every node of the group, in jobs.Job.Nodes order
	Boards map[string]Board // node → its board, for every node
}
