// Package scheduler makes the placement decisions of the lab scheduler: which
// queued jobs start now, on which boards, which boards are held back for the
// job at the head of the queue, and why every other job is still waiting.
//
// Plan is a pure function of a State: no goroutines, no clock (the time is
// State.Now), no I/O. The lab actor calls it whenever something changes (a job
// is submitted, finishes or is canceled, a board's health changes, a timer
// fires) and applies the Decision.
//
// # Policy
//
// Jobs are taken in queue order: priority descending, then Submitted
// ascending (FIFO within a priority), then ID ascending. A job starts only if
// every one of its nodes gets a distinct usable board at once (all or
// nothing; boards are matched to nodes with augmenting paths, preferring
// boards in lab order). A job of several nodes whose boards would span
// hosts (Board.Worker: a worker, or the server) starts on the first host, in lab order, that has a
// usable board for every node at once, if there is one: a group network
// does not cross hosts. It is a preference, not a condition: with no
// such host the job starts across hosts rather than wait. A board is usable by a job when it has the role's
// device type and all its tags, its health is Good (or Unknown, for device
// types without a health-check job), it is not busy, the job does not avoid
// it, it is not reserved for manual work (Board.ReservedBy), and it is not
// reserved for another job (but see backfill).
//
// # Reservation and backfill: the starvation bound
//
// The first job in queue order that cannot start now, but could once running
// jobs end, is the head. Plan predicts the earliest time T at which the head
// could start if nothing else started: each of its candidate boards frees at
// the expected end (Started+Timeout) of the job holding it, or now if idle or
// past that end. It reserves for the head the boards it would use at T,
// preferring those that free earliest. A later job may still start now
// (backfill) on boards that are not reserved, and on reserved boards only if
// it is expected to end (Now + its Timeout) no later than T.
//
// Bound: if jobs end by their timeouts, board health does not change and no
// job of higher priority (or an earlier submission of equal priority) is
// queued after it, the head starts no later than T, and T is at most the
// latest expected end of the jobs running when it became head (the jobs
// started in the same Plan call before it included). Every later Plan call
// recomputes the reservation, and T never moves later: the boards reserved
// before are all free or held by jobs ending by the old T. In short: once a
// job is the head it waits at most one maximum job timeout.
//
// A job that could not start even if every running job ended (its boards are
// unhealthy or avoided) is not made the head and holds no boards: it would
// only block others. It waits, explained, until health changes. A job that
// can never run on the lab (see Never) is likewise skipped and explained.
//
// Timeouts must be positive. A Job or Running with Timeout ≤ 0 is treated as
// never ending for prediction: it cannot backfill onto reserved boards, and
// boards it holds are predicted to free only in the far future.
package scheduler

import (
	"cmp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Health is the health of a board.
type Health string

// The board healths.
const (
	Unknown     Health = "unknown"
	Good        Health = "good"
	Bad         Health = "bad"
	Maintenance Health = "maintenance"
	Retired     Health = "retired"
)

// Board is one board of the lab.
type Board struct {
	Name, DeviceType string
	Tags             []string
	Health           Health
	// Worker is the worker the board is on ("": the lab server's own).
	// A group's boards on one host share a network; boards on different
	// hosts do not, so a job starts on the boards of one host when one
	// has all it needs at once (see the package comment).
	Worker string
	// ReservedBy holds the board for manual work until ReservedUntil: no
	// job starts on it before then. Empty: not reserved.
	ReservedBy    string
	ReservedUntil time.Time
}

// Reserved reports whether b is held for manual work at now.
func (b Board) Reserved(now time.Time) bool {
	return b.ReservedBy != "" && now.Before(b.ReservedUntil)
}

// Role is a group of identical nodes of a job.
type Role struct {
	Name, DeviceType string
	Count            int
	Tags             []string
}

// Job is a job waiting in the queue.
type Job struct {
	ID        string
	Name      string
	Priority  int // 0..100, higher first
	Submitted time.Time
	// Timeout is the upper bound of its run time, used to predict when
	// boards free up.
	Timeout time.Duration
	Roles   []Role
	// Avoid lists boards not to use (a retry after an infrastructure error
	// avoids the boards that failed).
	Avoid []string
}

// Running is a job holding boards. It is expected to end at Started+Timeout.
type Running struct {
	JobID   string
	Boards  []string
	Started time.Time
	Timeout time.Duration
}

// State is everything Plan decides from.
type State struct {
	Now     time.Time
	Queue   []Job     // waiting jobs, any order
	Boards  []Board   // the whole lab, in lab order
	Running []Running // jobs holding boards
	// Checked lists the device types that have a health-check job: their
	// Unknown boards are not schedulable until checked (Plan lists the idle
	// ones in Decision.HealthChecks). For other device types Unknown boards
	// are usable.
	Checked map[string]bool
	// Explain tells which waiting jobs Decision.Explain explains; nil:
	// every one. Explaining a job costs about as much as placing it.
	Explain func(jobID string) bool
}

// Start is a job to start now on the given boards.
type Start struct {
	JobID  string
	Boards map[string]string // node name "<role>-<i>" → board name
}

// Decision is what Plan decided.
type Decision struct {
	Start        []Start  // jobs to start now, in queue order
	HealthChecks []string // idle Unknown boards of checked device types, in lab order
	// Reserved maps each board held for the head of the queue to its job
	// ID. It lists the whole reservation, including boards still busy and
	// idle boards lent to backfill jobs (that end before the head's
	// predicted start).
	Reserved map[string]string
	Explain  map[string]Explanation // for every job still waiting (State.Explain), by job ID
}

// NodeNames lists the job's node names, "<role>-<i>", roles in the given
// order.
func (j Job) NodeNames() []string {
	var names []string
	for _, r := range j.Roles {
		for i := range r.Count {
			names = append(names, nodeName(r.Name, i))
		}
	}
	return names
}

func nodeName(role string, i int) string { return role + "-" + strconv.Itoa(i) }

// farFuture stands for "never" in predictions (timeouts ≤ 0).
const farFuture = 100 * 365 * 24 * time.Hour

// spec is the static part of a role: the boards of its device type that
// carry its tags, computed once per Plan per distinct (type, tags).
type spec struct {
	fit    []int // boards of the type with all the tags, lab order
	usable []int // the healthy ones among fit
	// idle holds the usable boards not busy and not held for manual work
	// as of the planner's start count idleAt (boards only become busy
	// during a Plan: a stale list is filtered, never rebuilt).
	idle      []int
	idleAt    int
	idleSet   bool
	mayServe  []int // the ones among fit whose health MayServe
	ofType    int
	lackTags  map[string]int
	unhealthy map[Health]int
}

type planner struct {
	s       State
	boards  []Board
	index   map[string]int
	healthy []bool
	heldBy  []string    // who reserved the board for manual work, or ""
	busyBy  []string    // job holding the board, or ""
	freeAt  []time.Time // predicted end of the holder; Now if idle
	resv    []string    // job the board is reserved for, or ""
	specs   map[specKey]*spec
	states  map[stateKey]*roleState
	noShare bool // count every waiting job's roles from scratch
	noIdle  bool // tryStart scans the usable boards, not the idle lists
	starts  int  // jobs started so far in this Plan (specs' idle lists)
	byType  map[string][]int
	// host is each board's host (Board.Worker) as a number, hosts how
	// many there are: a group's boards are taken from one when one has
	// them all (oneHost).
	host  []int
	hosts int
	// idleOfType counts the boards of each device type that are healthy,
	// not busy and not held for manual work: no job needing more of a type
	// can start now (a full lab then rejects each job without a search).
	idleOfType map[string]int

	// Head of the queue, once found.
	head     *Job
	headT    time.Time
	resvList []string

	// Scratch.
	avoid     []uint32 // board → stamp of the job that avoids it
	stamp     uint32
	m         matcher
	roleCands [][]int
	// never's scratch, and the role sets (rolesKey) it found feasible.
	neverCands [][]int
	neverBuf   []int
	feasible   map[string]bool
	keyBuf     []byte
	nodeCands  [][]int
	buf        []int
	hostBuf    []int    // oneHost's
	kept       []int    // split's
	parts      []string // explain's summary parts
}

func healthy(b Board, checked map[string]bool) bool {
	switch b.Health {
	case Good:
		return true
	case Unknown, "":
		return !checked[b.DeviceType]
	}
	return false
}

func newPlanner(s State) *planner {
	n := len(s.Boards)
	p := &planner{
		s:       s,
		boards:  s.Boards,
		index:   make(map[string]int, n),
		healthy: make([]bool, n),
		heldBy:  make([]string, n),
		busyBy:  make([]string, n),
		freeAt:  make([]time.Time, n),
		resv:    make([]string, n),
		specs:   map[specKey]*spec{},
		byType:  map[string][]int{},
		avoid:   make([]uint32, n),
		host:    make([]int, n),

		idleOfType: map[string]int{},
	}
	p.m.init(n)
	hostID := map[string]int{}
	for i, b := range s.Boards {
		h, ok := hostID[b.Worker]
		if !ok {
			h = len(hostID)
			hostID[b.Worker] = h
		}
		p.host[i] = h
		if _, dup := p.index[b.Name]; !dup {
			p.index[b.Name] = i
		}
		p.healthy[i] = healthy(b, s.Checked)
		p.freeAt[i] = s.Now
		if b.Reserved(s.Now) {
			p.heldBy[i] = b.ReservedBy
			p.freeAt[i] = b.ReservedUntil
		}
		p.byType[b.DeviceType] = append(p.byType[b.DeviceType], i)
	}
	p.hosts = len(hostID)
	for _, r := range s.Running {
		end := r.Started.Add(r.Timeout)
		if r.Timeout <= 0 {
			end = s.Now.Add(farFuture)
		}
		if end.Before(s.Now) {
			end = s.Now
		}
		for _, name := range r.Boards {
			if i, ok := p.index[name]; ok && p.busyBy[i] == "" {
				p.busyBy[i] = r.JobID
				p.freeAt[i] = later(p.freeAt[i], end)
			}
		}
	}
	for i, b := range s.Boards {
		if p.healthy[i] && p.busyBy[i] == "" && p.heldBy[i] == "" {
			p.idleOfType[b.DeviceType]++
		}
	}
	return p
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func hasTag(tags []string, t string) bool {
	for _, x := range tags {
		if x == t {
			return true
		}
	}
	return false
}

// specKey names a spec: device type and tags (one tag as is, several
// joined), built without allocating for the usual zero or one tag.
type specKey struct {
	typ  string
	n    int // how many tags
	tags string
}

func (p *planner) spec(r *Role) *spec {
	key := specKey{typ: r.DeviceType, n: len(r.Tags)}
	switch len(r.Tags) {
	case 0:
	case 1:
		key.tags = r.Tags[0]
	default:
		key.tags = strings.Join(r.Tags, "\x00")
	}
	if sp, ok := p.specs[key]; ok {
		return sp
	}
	sp := &spec{}
	for _, i := range p.byType[r.DeviceType] {
		b := &p.boards[i]
		sp.ofType++
		fit := true
		for _, t := range r.Tags {
			if !hasTag(b.Tags, t) {
				fit = false
				if sp.lackTags == nil {
					sp.lackTags = map[string]int{}
				}
				sp.lackTags[t]++
			}
		}
		if !fit {
			continue
		}
		sp.fit = append(sp.fit, i)
		if MayServe(b.Health) {
			sp.mayServe = append(sp.mayServe, i)
		}
		if p.healthy[i] {
			sp.usable = append(sp.usable, i)
		} else {
			if sp.unhealthy == nil {
				sp.unhealthy = map[Health]int{}
			}
			h := b.Health
			if h == "" {
				h = Unknown
			}
			sp.unhealthy[h]++
		}
	}
	p.specs[key] = sp
	return sp
}

// markAvoid stamps the boards j avoids; p.avoided(i) then tells.
func (p *planner) markAvoid(j *Job) {
	p.stamp++
	for _, name := range j.Avoid {
		if i, ok := p.index[name]; ok {
			p.avoid[i] = p.stamp
		}
	}
}

func (p *planner) avoided(i int) bool { return p.avoid[i] == p.stamp }

// mayBackfill reports whether j may use a board reserved for the head: it
// is expected to end no later than the head's predicted start.
func (p *planner) mayBackfill(j *Job) bool {
	return p.head != nil && j.Timeout > 0 && !p.s.Now.Add(j.Timeout).After(p.headT)
}

// usableNow reports whether board i is usable by j now (avoid marked).
func (p *planner) usableNow(j *Job, i int, backfill bool) bool {
	if p.busyBy[i] != "" || p.heldBy[i] != "" || p.avoided(i) {
		return false
	}
	r := p.resv[i]
	return r == "" || r == j.ID || backfill
}

func usableList(sp *spec) []int { return sp.usable }

// idleList is the usable boards of sp not busy and not held for manual
// work now: tryStart's candidates, so that a job does not scan the boards
// of its type that earlier jobs took.
func (p *planner) idleList(sp *spec) []int {
	if !sp.idleSet {
		sp.idleSet, sp.idleAt = true, p.starts
		for _, i := range sp.usable {
			if p.busyBy[i] == "" && p.heldBy[i] == "" {
				sp.idle = append(sp.idle, i)
			}
		}
		return sp.idle
	}
	if sp.idleAt != p.starts {
		sp.idleAt = p.starts
		sp.idle = slices.DeleteFunc(sp.idle, func(i int) bool { return p.busyBy[i] != "" })
	}
	return sp.idle
}

// tryStart starts j now if every node gets a usable board.
func (p *planner) tryStart(j *Job, d *Decision) bool {
	for ri, r := range j.Roles {
		need := 0
		for _, o := range j.Roles[ri:] {
			if o.DeviceType == r.DeviceType {
				need += max(o.Count, 0)
			}
		}
		if need > p.idleOfType[r.DeviceType] {
			return false
		}
	}
	backfill := p.mayBackfill(j)
	list := p.idleList
	if p.noIdle {
		list = usableList
	}
	keep := func(i int) bool { return p.usableNow(j, i, backfill) }
	got := p.match(j, list, keep)
	if got == nil {
		return false
	}
	if p.spansHosts(got) {
		if one := p.oneHost(j, list, keep); one != nil {
			got = one
		}
	}
	end := p.s.Now.Add(j.Timeout)
	if j.Timeout <= 0 {
		end = p.s.Now.Add(farFuture)
	}
	st := Start{JobID: j.ID, Boards: make(map[string]string, len(got))}
	n := 0
	for _, r := range j.Roles {
		for k := range max(r.Count, 0) {
			b := got[n]
			n++
			st.Boards[nodeName(r.Name, k)] = p.boards[b].Name
			p.busyBy[b] = j.ID
			p.freeAt[b] = end
			p.idleOfType[p.boards[b].DeviceType]--
		}
	}
	p.starts++
	d.Start = append(d.Start, st)
	return true
}

// makeHead tries to make j, which cannot start now, the head: it predicts
// when j could start and reserves the boards. It fails if j could not start
// even with every running job ended.
func (p *planner) makeHead(j *Job) bool {
	if p.match(j, usableList, func(i int) bool { return !p.avoided(i) }) == nil {
		return false
	}
	var times []time.Time
	for ri := range j.Roles {
		for _, i := range p.spec(&j.Roles[ri]).usable {
			if !p.avoided(i) {
				times = append(times, p.freeAt[i])
			}
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	times = slices.Compact(times)
	// The last time is feasible: every candidate is free then.
	k := sort.Search(len(times)-1, func(k int) bool {
		t := times[k]
		return p.match(j, usableList, func(i int) bool { return !p.avoided(i) && !p.freeAt[i].After(t) }) != nil
	})
	t := times[k]
	// Reserve the boards that free earliest: candidates ordered by free
	// time, then lab order.
	byFree := func(sp *spec) []int {
		l := slices.Clone(sp.usable)
		slices.SortStableFunc(l, func(a, b int) int { return p.freeAt[a].Compare(p.freeAt[b]) })
		return l
	}
	got := p.match(j, byFree, func(i int) bool { return !p.avoided(i) && !p.freeAt[i].After(t) })
	slices.Sort(got)
	p.head, p.headT = j, t
	for _, b := range got {
		p.resv[b] = j.ID
		p.resvList = append(p.resvList, p.boards[b].Name)
	}
	return true
}

// queueOrder is the order of the queue: priority descending, then
// Submitted ascending, then ID ascending.
func queueOrder(a, b *Job) int {
	if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
		return c
	}
	if c := a.Submitted.Compare(b.Submitted); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// Plan decides which queued jobs start now and on which boards, which
// boards are reserved for the head of the queue, which boards need a
// health check, and why every other job waits. See the package comment for
// the policy.
func Plan(s State) Decision {
	return plan(s, options{})
}

// options switch parts of Plan off, for tests that show what a part
// prevents or that it decides as the plain way would: noReserve, the
// head's reservation (the starvation it prevents); noShare, the sharing of
// role counts between waiting jobs; noIdle, the idle lists of tryStart
// (every start then scans all the usable boards of its roles).
type options struct{ noReserve, noShare, noIdle bool }

// plan is Plan with options.
func plan(s State, o options) Decision {
	p := newPlanner(s)
	p.noShare, p.noIdle = o.noShare, o.noIdle
	explained := len(s.Queue)
	if s.Explain != nil {
		explained = 0 // few: grown as needed
	}
	d := Decision{Reserved: map[string]string{}, Explain: make(map[string]Explanation, explained)}
	for i, b := range s.Boards {
		if (b.Health == Unknown || b.Health == "") && s.Checked[b.DeviceType] && p.busyBy[i] == "" && p.heldBy[i] == "" {
			d.HealthChecks = append(d.HealthChecks, b.Name)
		}
	}
	// Sorted by position: ties of queueOrder keep the given order, as a
	// stable sort would, at the cost of an unstable one.
	order := make([]int, len(s.Queue))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := queueOrder(&s.Queue[a], &s.Queue[b]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	queue := make([]*Job, len(s.Queue))
	for i, k := range order {
		queue[i] = &s.Queue[k]
	}

	type waiting struct {
		j     *Job
		pos   int
		never []string
	}
	wait := make([]waiting, 0, len(queue))
	for pos, j := range queue {
		p.markAvoid(j)
		if p.tryStart(j, &d) {
			continue
		}
		w := waiting{j: j, pos: pos + 1}
		if p.head == nil && !o.noReserve {
			if w.never = p.never(j); w.never == nil {
				p.makeHead(j)
			}
		}
		wait = append(wait, w)
	}
	for _, b := range p.resvList {
		d.Reserved[b] = p.head.ID
	}
	for _, w := range wait {
		if s.Explain != nil && !s.Explain(w.j.ID) {
			continue
		}
		if w.never == nil && (p.head == nil || w.j != p.head) {
			w.never = p.never(w.j)
		}
		d.Explain[w.j.ID] = p.explain(w.j, w.pos, w.never)
	}
	return d
}
