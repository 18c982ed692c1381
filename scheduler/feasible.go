package scheduler

import (
	"fmt"
	"strconv"
	"strings"
)

// MayServe is the one feasibility rule: whether a board of health h counts
// toward what a job can ever run on. Good boards serve; unknown ones are
// checked into service; maintenance boards come back when the operator is
// done. Bad and retired boards stay out until an operator acts, so a job
// that needs them is dropped rather than left waiting forever.
func MayServe(h Health) bool {
	switch h {
	case Good, Unknown, "", Maintenance:
		return true
	}
	return false
}

// NeverError is the error of Never: one line per problem.
type NeverError struct {
	JobID string
	Lines []string
}

func (e *NeverError) Error() string { return strings.Join(e.Lines, "; ") }

// Never reports whether j can never run on the lab of s, counting the
// boards whose health MayServe and that j does not avoid: if so it returns
// a *NeverError, e.g. "role client needs 3 boards of type rpi4 with tags
// [usb]; the lab has 1". lab.Check, the lab's state machine and Plan all
// decide with it.
func Never(s State, j Job) error {
	return NewFeasibility(s.Boards).Never(j)
}

// Feasibility answers Never for many jobs on one lab: it indexes the
// boards once and remembers the role sets it found feasible. It must not
// be used after the boards' health changes.
type Feasibility struct{ p *planner }

// NewFeasibility indexes the lab's boards for Never.
func NewFeasibility(boards []Board) *Feasibility {
	return &Feasibility{p: newPlanner(State{Boards: boards})}
}

// Never is the package's Never for a job on this lab.
func (f *Feasibility) Never(j Job) error {
	if lines := f.p.never(&j); len(lines) > 0 {
		return &NeverError{JobID: j.ID, Lines: lines}
	}
	return nil
}

// never returns why j can never run on the lab, or nil.
func (p *planner) never(j *Job) []string {
	p.markAvoid(j)
	var key []byte // nil: not cached (the job avoids boards)
	if len(j.Avoid) == 0 {
		p.keyBuf = rolesKey(p.keyBuf[:0], j.Roles)
		key = p.keyBuf
		if p.feasible[string(key)] { // no allocation for the lookup
			return nil
		}
	}
	var lines []string
	cands := p.neverCands[:0]
	defer func() { p.neverCands = cands[:0] }()
	p.neverBuf = p.neverBuf[:0]
	for ri := range j.Roles {
		r := &j.Roles[ri]
		cands = append(cands, p.spec(r).mayServe)
		avoided := ""
		if len(j.Avoid) > 0 {
			start := len(p.neverBuf)
			for _, i := range cands[ri] {
				if !p.avoided(i) {
					p.neverBuf = append(p.neverBuf, i)
				}
			}
			all := len(cands[ri])
			cands[ri] = p.neverBuf[start:len(p.neverBuf):len(p.neverBuf)]
			if n := all - len(cands[ri]); n > 0 {
				avoided = fmt.Sprintf(" (and %d the job avoids)", n)
			}
		}
		if n := len(cands[ri]); n < r.Count {
			lines = append(lines, fmt.Sprintf("role %s needs %d boards of type %s%s; the lab has %d%s",
				r.Name, r.Count, r.DeviceType, withTags(r.Tags), n, avoided))
		}
	}
	if len(lines) > 0 {
		return lines
	}
	var nodeRoles []int
	p.nodeCands = p.nodeCands[:0]
	for ri := range j.Roles {
		r := &j.Roles[ri]
		for range max(r.Count, 0) {
			p.nodeCands = append(p.nodeCands, cands[ri])
			nodeRoles = append(nodeRoles, ri)
		}
	}
	defer p.m.clear()
	p.m.start(p.nodeCands)
	for n := range p.nodeCands {
		p.m.stamp++
		if p.m.augment(n) {
			continue
		}
		// The boards tried are all the candidates of the nodes reached
		// from node n: fewer than those nodes need.
		inSet := map[int]bool{nodeRoles[n]: true}
		boards := 0
		for b, st := range p.m.visited {
			if st == p.m.stamp {
				boards++
				if o := p.m.owner[b]; o >= 0 {
					inSet[nodeRoles[o]] = true
				}
			}
		}
		var names, counts []string
		need := 0
		for ri, r := range j.Roles {
			if inSet[ri] {
				names = append(names, r.Name)
				counts = append(counts, fmt.Sprintf("%s: %d of type %s%s", r.Name, r.Count, r.DeviceType, withTags(r.Tags)))
				need += r.Count
			}
		}
		return []string{fmt.Sprintf("roles %s together need %d boards (%s); the lab has %d that fit them",
			strings.Join(names, ", "), need, strings.Join(counts, ", "), boards)}
	}
	if key != nil {
		if p.feasible == nil {
			p.feasible = map[string]bool{}
		}
		p.feasible[string(key)] = true
	}
	return nil
}

// rolesKey appends to k what the roles need (device type, tags, count):
// the key of the feasibility cache of jobs that avoid no board.
func rolesKey(k []byte, roles []Role) []byte {
	for _, r := range roles {
		k = append(k, r.DeviceType...)
		for _, t := range r.Tags {
			k = append(k, 0)
			k = append(k, t...)
		}
		k = append(k, 1)
		k = strconv.AppendInt(k, int64(r.Count), 10)
		k = append(k, 2)
	}
	return k
}

func withTags(tags []string) string {
	if len(tags) == 0 {
		return ""
	}
	return fmt.Sprintf(" with tags [%s]", strings.Join(tags, " "))
}
