package lab

import (
	"fmt"
	"strings"

	"github.com/troupe-lab/troupe/jobs"
)

// UnsatisfiableError means that a lab can never run a job, however many of
// its boards are free.
type UnsatisfiableError struct {
	Job   string
	Lab   string
	Lines []string // one per problem
}

func (e *UnsatisfiableError) Error() string {
	return fmt.Sprintf("lab %s cannot run job %s: %s", e.Lab, e.Job, strings.Join(e.Lines, "; "))
}

// Check reports whether l could run j if all its boards were free. If not,
// it returns an *UnsatisfiableError.
func (l *Lab) Check(j *jobs.Job) error {
	if _, problems := l.match(j, nil, ""); len(problems) > 0 {
		return &UnsatisfiableError{Job: j.Name, Lab: l.File, Lines: problems}
	}
	return nil
}

// Assign gives every node of j (by name) a distinct board of its role's
// device type, carrying all the role's tags, for which free is true (a nil
// free means all boards are free). It assigns all nodes or none; among the
// possible assignments it prefers boards in lab order, deterministically.
func (l *Lab) Assign(j *jobs.Job, free func(Board) bool) (map[string]Board, error) {
	got, problems := l.match(j, free, " free")
	if len(problems) > 0 {
		return nil, fmt.Errorf("assign boards of lab %s to job %s: %s", l.File, j.Name, strings.Join(problems, "; "))
	}
	return got, nil
}

// fits reports whether b can serve as a node of r.
func fits(r jobs.Role, b Board) bool {
	if b.DeviceType != r.DeviceType {
		return false
	}
	for _, t := range r.Tags {
		found := false
		for _, bt := range b.Tags {
			found = found || bt == t
		}
		if !found {
			return false
		}
	}
	return true
}

// matcher finds a maximum bipartite matching of nodes to boards with
// augmenting paths (Kuhn's algorithm).
type matcher struct {
	cands   [][]int // node -> candidate boards, in lab order
	owner   []int   // board -> node, or -1
	visited []bool  // boards, per augmenting search
}

// augment finds a board for node: a free one if it can (in lab order),
// else one it frees by moving its owner along an augmenting path.
func (m *matcher) augment(node int) bool {
	for _, b := range m.cands[node] {
		if m.owner[b] < 0 && !m.visited[b] {
			m.visited[b] = true
			m.owner[b] = node
			return true
		}
	}
	for _, b := range m.cands[node] {
		if m.visited[b] {
			continue
		}
		m.visited[b] = true
		if m.owner[b] < 0 || m.augment(m.owner[b]) {
			m.owner[b] = node
			return true
		}
	}
	return false
}

// match assigns boards for which ok is true (nil: all) to the nodes of j.
// If that is impossible it explains why, calling the usable boards "<adj>
// boards".
func (l *Lab) match(j *jobs.Job, ok func(Board) bool, adj string) (map[string]Board, []string) {
	roleCands := map[string][]int{}
	var problems []string
	for _, r := range j.Roles {
		var cands []int
		for i, b := range l.Boards {
			if fits(r, b) && (ok == nil || ok(b)) {
				cands = append(cands, i)
			}
		}
		roleCands[r.Name] = cands
		if len(cands) < r.Count {
			problems = append(problems, fmt.Sprintf("role %s needs %d boards of type %s%s; the lab has %d%s",
				r.Name, r.Count, r.DeviceType, withTags(r.Tags), len(cands), adj))
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	nodes := j.Nodes()
	m := &matcher{owner: make([]int, len(l.Boards))}
	for i := range m.owner {
		m.owner[i] = -1
	}
	for _, n := range nodes {
		m.cands = append(m.cands, roleCands[n.Role])
	}
	for i := range nodes {
		m.visited = make([]bool, len(l.Boards))
		if !m.augment(i) {
			// The boards tried (m.visited) are all the candidates of the
			// nodes reached from node i: fewer than those nodes need.
			return nil, []string{l.jointProblem(j, nodes[i].Role, nodes, m, adj)}
		}
	}
	got := make(map[string]Board, len(nodes))
	for b, n := range m.owner {
		if n >= 0 {
			got[nodes[n].Name] = l.Boards[b]
		}
	}
	return got, nil
}

// jointProblem describes the roles whose nodes compete for too few boards,
// after a failed augmenting search for a node of role.
func (l *Lab) jointProblem(j *jobs.Job, role string, nodes []jobs.Node, m *matcher, adj string) string {
	boards := 0
	inSet := map[string]bool{role: true}
	for b, seen := range m.visited {
		if seen {
			boards++
			if m.owner[b] >= 0 {
				inSet[nodes[m.owner[b]].Role] = true
			}
		}
	}
	var names, counts []string
	need := 0
	for _, r := range j.Roles {
		if inSet[r.Name] {
			names = append(names, r.Name)
			counts = append(counts, fmt.Sprintf("%s: %d of type %s%s", r.Name, r.Count, r.DeviceType, withTags(r.Tags)))
			need += r.Count
		}
	}
	return fmt.Sprintf("roles %s together need %d boards (%s); the lab has %d%s that fit them",
		strings.Join(names, ", "), need, strings.Join(counts, ", "), boards, adj)
}

func withTags(tags []string) string {
	if len(tags) == 0 {
		return ""
	}
	return fmt.Sprintf(" with tags [%s]", strings.Join(tags, " "))
}
