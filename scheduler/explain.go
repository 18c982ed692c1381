package scheduler

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Explanation says why a job is still waiting.
type Explanation struct {
	JobID    string     `json:"job_id"`
	Position int        `json:"position"` // 1-based in the ordered queue
	Roles    []RoleWait `json:"roles"`
	// Head is true for the head of the queue, whose boards are reserved;
	// PredictedStart is then when it is expected to start at the latest.
	Head           bool      `json:"head"`
	PredictedStart time.Time `json:"predicted_start"`
	// Never is set when the job can never run on the lab (see Never).
	Never string `json:"never"`
	// Summary is one line, e.g. "position 2; role client needs 3 sim
	// boards: 1 idle, 2 busy (job-7); waiting for job-3 (head of queue,
	// reserved sim-2)".
	Summary string `json:"summary"`
}

// RoleWait counts the boards of one role of a waiting job. Every board of
// the role's device type that carries all the role's tags is counted in
// exactly one of Unhealthy, Busy, ReservedBy, ReservedFor, Avoided and
// Idle (in that order of precedence: Avoided counts the boards the job
// avoids that would otherwise be idle for it). Empty maps are nil. The maps may be shared between
// the RoleWaits of a Decision (computing 1000 explanations must stay cheap):
// treat them as read-only.
type RoleWait struct {
	Role       string         `json:"role"`
	DeviceType string         `json:"device_type"`
	Need       int            `json:"need"`
	OfType     int            `json:"of_type"`   // boards of that device type in the lab
	LackTags   map[string]int `json:"lack_tags"` // tag → how many boards of the type lack it
	// Unhealthy counts bad, maintenance and retired boards, and unknown
	// ones of checked device types.
	Unhealthy   map[Health]int      `json:"unhealthy"`
	Avoided     int                 `json:"avoided"`      // otherwise idle boards the job avoids
	Busy        map[string][]string `json:"busy"`         // job ID → its boards (running, or started by this decision)
	ReservedBy  map[string][]string `json:"reserved_by"`  // owner → boards reserved for manual work
	ReservedFor map[string][]string `json:"reserved_for"` // job ID → idle boards reserved for it that this job may not use
	Idle        int                 `json:"idle"`         // usable by this job now
}

// roleState is the dynamic part of a RoleWait (and of its summary), the
// same for every waiting job of the same role spec that avoids none of its
// boards and is not the head: computed once, shared.
type roleState struct {
	avoided     int
	busy        map[string][]string
	busyIDs     []string // the keys of busy, sorted
	busyN       int      // boards in busy
	reservedBy  map[string][]string
	until       map[string]time.Time // owner → end of its latest reservation
	reservedFor map[string][]string
	idle        int
	reserved    []string // boards in reservedFor
	tail        string   // the summary after "role r needs n t boards: "
}

type stateKey struct {
	sp       *spec
	backfill bool
}

func (p *planner) roleState(j *Job, sp *spec, tags []string, backfill bool) *roleState {
	if p.head == j || p.noShare {
		st := p.countRole(j, sp, true, backfill)
		st.tail = describeRole(sp, st, tags)
		return st
	}
	// Not the head: no board is reserved for j, so the state is the one
	// of every job of the same spec, less the boards j avoids.
	key := stateKey{sp, backfill}
	base, ok := p.states[key]
	if !ok {
		base = p.countRole(j, sp, false, backfill)
		base.tail = describeRole(sp, base, tags)
		if p.states == nil {
			p.states = map[stateKey]*roleState{}
		}
		p.states[key] = base
	}
	var own *roleState
	var done []int
	for _, name := range j.Avoid {
		i, ok := p.index[name]
		if !ok || !p.healthy[i] || slices.Contains(done, i) || !slices.Contains(sp.fit, i) {
			continue
		}
		done = append(done, i)
		if own == nil {
			c := *base
			own = &c
		}
		own.avoid(p, i, backfill)
	}
	if own == nil {
		return base
	}
	own.tail = describeRole(sp, own, tags)
	return own
}

// countRole counts the boards of sp for j; avoid: count the boards j
// avoids as such (else as if it avoided none).
func (p *planner) countRole(j *Job, sp *spec, avoid, backfill bool) *roleState {
	st := &roleState{}
	for _, i := range sp.fit {
		switch {
		case !p.healthy[i]:
		case p.busyBy[i] != "":
			if st.busy == nil {
				st.busy = map[string][]string{}
			}
			st.busy[p.busyBy[i]] = append(st.busy[p.busyBy[i]], p.boards[i].Name)
		case p.heldBy[i] != "":
			if st.reservedBy == nil {
				st.reservedBy, st.until = map[string][]string{}, map[string]time.Time{}
			}
			o := p.heldBy[i]
			st.reservedBy[o] = append(st.reservedBy[o], p.boards[i].Name)
			st.until[o] = later(st.until[o], p.boards[i].ReservedUntil)
		case p.resv[i] != "" && p.resv[i] != j.ID && !backfill:
			if st.reservedFor == nil {
				st.reservedFor = map[string][]string{}
			}
			st.reservedFor[p.resv[i]] = append(st.reservedFor[p.resv[i]], p.boards[i].Name)
			st.reserved = append(st.reserved, p.boards[i].Name)
		case avoid && p.avoided(i):
			st.avoided++
		default:
			st.idle++
		}
	}
	for id, bs := range st.busy {
		st.busyIDs = append(st.busyIDs, id)
		st.busyN += len(bs)
	}
	slices.Sort(st.busyIDs)
	return st
}

// avoid counts healthy board i of the role as avoided if countRole
// counted it idle (st is a copy of a shared state).
func (st *roleState) avoid(p *planner, i int, backfill bool) {
	if p.busyBy[i] != "" || p.heldBy[i] != "" || (p.resv[i] != "" && !backfill) {
		return
	}
	st.idle--
	st.avoided++
}

func (p *planner) explain(j *Job, pos int, never []string) Explanation {
	p.markAvoid(j)
	backfill := p.mayBackfill(j)
	e := Explanation{JobID: j.ID, Position: pos}
	if len(never) > 0 {
		e.Never = strings.Join(never, "; ")
	}
	isHead := p.head == j
	if isHead {
		e.Head, e.PredictedStart = true, p.headT
	}
	// The summary's parts are gathered first and the summary built in one
	// allocation: 10 000 waiting jobs are 10 000 summaries per Plan.
	parts := p.parts[:0]
	parts = append(parts, "position ", strconv.Itoa(pos))
	if len(never) > 0 {
		parts = append(parts, "; can never run on this lab: ", e.Never)
	}
	if isHead {
		parts = append(parts, "; head of queue")
	}
	short := 0 // roles without enough idle boards
	var reservedSeen []string
	e.Roles = make([]RoleWait, 0, len(j.Roles))
	for ri := range j.Roles {
		r := &j.Roles[ri]
		sp := p.spec(r)
		st := p.roleState(j, sp, r.Tags, backfill)
		e.Roles = append(e.Roles, RoleWait{Role: r.Name, DeviceType: r.DeviceType, Need: r.Count, OfType: sp.ofType,
			LackTags: sp.lackTags, Unhealthy: sp.unhealthy,
			Avoided: st.avoided, Busy: st.busy, ReservedBy: st.reservedBy, ReservedFor: st.reservedFor, Idle: st.idle})
		reservedSeen = append(reservedSeen, st.reserved...)
		if st.idle < r.Count && len(never) == 0 {
			short++
			parts = append(parts, "; role ", r.Name, " needs ", strconv.Itoa(r.Count), " ", r.DeviceType, " boards", withTags(r.Tags), ": ", st.tail)
		}
	}
	if short == 0 && len(never) == 0 {
		parts = append(parts, "; enough idle boards for each role, but not for all roles together")
	}
	if isHead {
		parts = append(parts, "; reserved ", list(p.resvList), "; predicted start ", in(p.headT.Sub(p.s.Now)))
	} else if len(reservedSeen) > 0 && len(never) == 0 {
		slices.Sort(reservedSeen)
		reservedSeen = slices.Compact(reservedSeen)
		parts = append(parts, "; waiting for ", p.head.ID, " (head of queue, reserved ", list(reservedSeen), ")")
	}
	n := 0
	for _, part := range parts {
		n += len(part)
	}
	var sum strings.Builder
	sum.Grow(n)
	for _, part := range parts {
		sum.WriteString(part)
	}
	e.Summary = sum.String()
	clear(parts)
	p.parts = parts[:0]
	return e
}

func in(d time.Duration) string {
	if d <= 0 {
		return "now"
	}
	if d > time.Second {
		d = d.Round(time.Second)
	}
	return "in " + d.String()
}

func describeRole(sp *spec, st *roleState, tags []string) string {
	if sp.ofType == 0 {
		return "the lab has none"
	}
	var sum strings.Builder
	fmt.Fprintf(&sum, "%d idle", st.idle)
	if len(st.busy) > 0 {
		fmt.Fprintf(&sum, ", %d busy (%s)", st.busyN, list(st.busyIDs))
	}
	if len(st.reservedBy) > 0 {
		owners := make([]string, 0, len(st.reservedBy))
		for o := range st.reservedBy {
			owners = append(owners, o)
		}
		slices.Sort(owners)
		for _, o := range owners {
			fmt.Fprintf(&sum, ", %d reserved by %s until %s", len(st.reservedBy[o]), o, st.until[o].UTC().Format(time.RFC3339))
		}
	}
	for id, bs := range st.reservedFor { // at most one: the head
		fmt.Fprintf(&sum, ", %d reserved for %s", len(bs), id)
	}
	if st.avoided > 0 {
		fmt.Fprintf(&sum, ", %d avoided", st.avoided)
	}
	if len(sp.unhealthy) > 0 {
		var parts []string
		n := 0
		for _, h := range []Health{Bad, Maintenance, Retired, Unknown} {
			if c := sp.unhealthy[h]; c > 0 {
				n += c
				parts = append(parts, fmt.Sprintf("%d %s", c, h))
			}
		}
		fmt.Fprintf(&sum, ", %d unhealthy (%s)", n, strings.Join(parts, ", "))
	}
	if len(sp.lackTags) > 0 {
		var parts []string
		for _, t := range tags {
			if c := sp.lackTags[t]; c > 0 {
				parts = append(parts, fmt.Sprintf("%d without %s", c, t))
			}
		}
		fmt.Fprintf(&sum, ", %s", strings.Join(parts, ", "))
	}
	return sum.String()
}

// list joins names, showing at most 3.
func list(names []string) string {
	if len(names) <= 3 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s, +%d more", strings.Join(names[:3], ", "), len(names)-3)
}
