package coordinator

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Member is one node of the group.
type Member struct {
	Name string // node name, e.g. "server-0"
	Role string // its role, e.g. "server"
}

// Kind is the kind of a MultiNode call.
type Kind string

// The MultiNode calls.
const (
	Send    Kind = "send"
	Wait    Kind = "wait"
	WaitAll Kind = "wait-all"
	Sync    Kind = "sync"
)

// KV is one key=value pair given to Send.
type KV struct{ Key, Value string }

// Message is one pair received by Wait or WaitAll.
type Message struct{ Sender, Key, Value string }

// Request is one MultiNode call of one node.
type Request struct {
	Node    string        // caller
	Kind    Kind          // Send, Wait, WaitAll or Sync
	ID      string        // message / barrier id
	Role    string        // WaitAll only: restrict to this role ("" = all)
	Data    []KV          // Send only
	Timeout time.Duration // blocking calls: > 0; Send: ignored (must be >= 0)
}

// Reply is the answer to one call, to be delivered to Node.
type Reply struct {
	Node string
	Kind Kind
	ID   string
	OK   bool
	// Data (Wait, WaitAll): the pairs sent under ID by the nodes waited for,
	// sorted by sender, then in send order.
	Data []Message
	Err  string // !OK: human-readable reason
}

// ErrBadRequest is wrapped by every error returned by Handle.
var ErrBadRequest = errors.New("bad multinode request")

// callKey identifies a call for retries and the reply cache.
type callKey struct {
	node     int
	kind     Kind
	id, role string
}

// call is one pending blocking call.
type call struct {
	key      callKey
	timeout  time.Duration
	deadline time.Time
	hidx     int // index in Group.heap
}

// sentID is everything about one send ID.
type sentID struct {
	has       []bool // by node index: has sent this ID
	pairs     [][]KV // by node index
	count     int    // nodes that have sent it
	roleCount map[string]int
	waiters   map[int]struct{} // nodes with a pending Wait / WaitAll on it
}

// barrier is one sync ID not yet completed.
type barrier struct {
	arrived []bool // by node index: pending at this barrier
	count   int
}

// Group is the coordinator state of one group. It is not safe for concurrent
// use: one actor drives it.
type Group struct {
	names       []string // sorted; a node's index is its position here
	roles       []string // by index
	index       map[string]int
	roleMembers map[string][]int // sorted indexes

	ended      []bool
	reasons    []string
	endedCount int

	sent  map[string]*sentID
	syncs map[string]*barrier

	pending []*call // by node index
	heap    callHeap
	cache   map[callKey]Reply // last OK reply
}

// New creates the state of a group. Names must be unique and non-empty, roles
// non-empty, and there must be at least one member.
func New(members []Member) (*Group, error) {
	if len(members) == 0 {
		return nil, errors.New("coordinator: empty group")
	}
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	n := len(ms)
	g := &Group{
		names:       make([]string, n),
		roles:       make([]string, n),
		index:       make(map[string]int, n),
		roleMembers: map[string][]int{},
		ended:       make([]bool, n),
		reasons:     make([]string, n),
		sent:        map[string]*sentID{},
		syncs:       map[string]*barrier{},
		pending:     make([]*call, n),
		cache:       map[callKey]Reply{},
	}
	for i, m := range ms {
		if m.Name == "" {
			return nil, errors.New("coordinator: member with an empty name")
		}
		if m.Role == "" {
			return nil, fmt.Errorf("coordinator: member %s has an empty role", m.Name)
		}
		if _, dup := g.index[m.Name]; dup {
			return nil, fmt.Errorf("coordinator: duplicate member name %q", m.Name)
		}
		g.names[i], g.roles[i], g.index[m.Name] = m.Name, m.Role, i
		g.roleMembers[m.Role] = append(g.roleMembers[m.Role], i)
	}
	return g, nil
}

// Pending is the number of blocking calls waiting for a reply.
func (g *Group) Pending() int { return len(g.heap) }

// NextDeadline is the earliest deadline of a pending call; false when none is
// pending.
func (g *Group) NextDeadline() (time.Time, bool) {
	if len(g.heap) == 0 {
		return time.Time{}, false
	}
	return g.heap[0].deadline, true
}

// Tick fails every pending call whose deadline is <= now.
func (g *Group) Tick(now time.Time) []Reply {
	return sortReplies(g.expire(now, nil))
}

// Handle processes one request and returns the replies now due, to any nodes.
// The error (wrapping ErrBadRequest) is only for a bad request, which changes
// nothing.
func (g *Group) Handle(now time.Time, r Request) ([]Reply, error) {
	n, err := g.validate(r)
	if err != nil {
		return nil, err
	}
	out := g.expire(now, nil)
	if r.Kind == Send {
		out = g.send(n, r, out)
	} else {
		out = g.call(now, n, r, out)
	}
	return sortReplies(out), nil
}

// Ended records that node can never send or arrive again, and returns the
// failures of every pending call that can now never complete. Unknown or
// already ended nodes change nothing (beyond expiring overdue calls).
func (g *Group) Ended(now time.Time, node, reason string) []Reply {
	out := g.expire(now, nil)
	x, ok := g.index[node]
	if !ok || g.ended[x] {
		return sortReplies(out)
	}
	if reason == "" {
		reason = "ended"
	}
	g.ended[x], g.reasons[x] = true, reason
	g.endedCount++
	if c := g.pending[x]; c != nil {
		g.remove(c) // no one left to read the reply
	}
	var others string // for Waits: every other node has ended
	for i, c := range g.pending {
		if c == nil {
			continue
		}
		switch c.key.kind {
		case Wait:
			if g.endedCount == len(g.names)-1 {
				if others == "" {
					others = g.endedList(-1, "")
				}
				out = g.fail(c, fmt.Sprintf("%s: no node can send it any more: %s", describe(c.key), others), out)
			}
		case WaitAll:
			if x != i && g.isTarget(x, c.key.role) && !g.hasSent(c.key.id, x) {
				out = g.fail(c, fmt.Sprintf("%s: %s", describe(c.key), g.nodeEnded(x)), out)
			}
		case Sync:
			// x is not at the barrier (its own call was just dropped).
			out = g.fail(c, fmt.Sprintf("%s: %s", describe(c.key), g.nodeEnded(x)), out)
		}
	}
	return sortReplies(out)
}

func (g *Group) validate(r Request) (int, error) {
	bad := func(format string, args ...any) (int, error) {
		return -1, fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
	}
	n, ok := g.index[r.Node]
	if !ok {
		return bad("unknown node %q", r.Node)
	}
	if g.ended[n] {
		return bad("node %s has ended (%s)", r.Node, g.reasons[n])
	}
	switch r.Kind {
	case Send, Wait, WaitAll, Sync:
	default:
		return bad("%s: unknown call kind %q", r.Node, r.Kind)
	}
	if r.ID == "" {
		return bad("%s: %s with an empty id", r.Node, r.Kind)
	}
	if len(r.Data) > 0 && r.Kind != Send {
		return bad("%s: %s '%s' carries data (only send does)", r.Node, r.Kind, r.ID)
	}
	if r.Role != "" {
		if r.Kind != WaitAll {
			return bad("%s: %s '%s' with a role (only wait-all takes one)", r.Node, r.Kind, r.ID)
		}
		if _, ok := g.roleMembers[r.Role]; !ok {
			return bad("%s: wait-all '%s': unknown role %q", r.Node, r.ID, r.Role)
		}
	}
	if r.Timeout < 0 || (r.Timeout == 0 && r.Kind != Send) {
		return bad("%s: %s '%s': timeout %v must be positive", r.Node, r.Kind, r.ID, r.Timeout)
	}
	return n, nil
}

func (g *Group) send(n int, r Request, out []Reply) []Reply {
	s := g.sentFor(r.ID)
	if !s.has[n] {
		s.has[n] = true
		s.count++
		s.roleCount[g.roles[n]]++
	}
	s.pairs[n] = slices.Clone(r.Data)
	out = append(out, Reply{Node: g.names[n], Kind: Send, ID: r.ID, OK: true})
	for w := range s.waiters { // order does not matter: replies are sorted
		if c := g.pending[w]; w != n && g.ready(c.key) {
			out = g.complete(c.key, c, out)
		}
	}
	return out
}

func (g *Group) call(now time.Time, n int, r Request, out []Reply) []Reply {
	key := callKey{node: n, kind: r.Kind, id: r.ID, role: r.Role}
	p := g.pending[n]
	if p != nil && p.key == key {
		return out // retry of the pending call: it will answer
	}
	if p != nil {
		g.remove(p) // the shell moved on: replaced, no reply
	}
	if rep, ok := g.cache[key]; ok {
		rep.Data = slices.Clone(rep.Data)
		return append(out, rep)
	}
	if g.ready(key) {
		return g.complete(key, nil, out)
	}
	if msg, failed := g.impossible(key); failed {
		return append(out, Reply{Node: g.names[n], Kind: key.kind, ID: key.id, Err: msg})
	}
	c := &call{key: key, timeout: r.Timeout, deadline: now.Add(r.Timeout)}
	g.pending[n] = c
	heap.Push(&g.heap, c)
	switch key.kind {
	case Wait, WaitAll:
		g.sentFor(key.id).waiters[n] = struct{}{}
	case Sync:
		b := g.syncs[key.id]
		if b == nil {
			b = &barrier{arrived: make([]bool, len(g.names))}
			g.syncs[key.id] = b
		}
		b.arrived[n] = true
		b.count++
		if b.count == len(g.names) {
			for i := range g.pending {
				out = g.complete(g.pending[i].key, g.pending[i], out)
			}
			delete(g.syncs, key.id)
		}
	}
	return out
}

// ready reports whether a Wait / WaitAll could complete now. Syncs complete
// only on the last arrival.
func (g *Group) ready(k callKey) bool {
	s := g.sent[k.id]
	switch k.kind {
	case Wait:
		return s != nil && s.count-b2i(s.has[k.node]) > 0
	case WaitAll:
		got, need := g.waitAllCount(k)
		return got == need
	case Sync:
		return len(g.names) == 1 && !g.ended[k.node]
	}
	return false
}

// waitAllCount returns how many of the nodes a WaitAll waits for have sent
// its ID, and how many it waits for.
func (g *Group) waitAllCount(k callKey) (got, need int) {
	s := g.sent[k.id]
	if k.role == "" {
		need = len(g.names) - 1
		if s != nil {
			got = s.count - b2i(s.has[k.node])
		}
		return got, need
	}
	self := g.roles[k.node] == k.role
	need = len(g.roleMembers[k.role]) - b2i(self)
	if s != nil {
		got = s.roleCount[k.role] - b2i(self && s.has[k.node])
	}
	return got, need
}

// impossible reports whether a new call (not ready) can never complete
// because of ended nodes, and why.
func (g *Group) impossible(k callKey) (string, bool) {
	n := len(g.names)
	switch k.kind {
	case Wait:
		if n == 1 {
			return describe(k) + ": no other node in the group", true
		}
		if g.endedCount == n-1 {
			return fmt.Sprintf("%s: no node can send it any more: %s", describe(k), g.endedList(-1, "")), true
		}
	case WaitAll:
		if g.endedCount == 0 {
			return "", false
		}
		var dead []string
		for _, i := range g.targets(k.role) {
			if i != k.node && g.ended[i] && !g.hasSent(k.id, i) {
				dead = append(dead, g.nodeEnded(i))
			}
		}
		if len(dead) > 0 {
			return describe(k) + ": " + strings.Join(dead, ", "), true
		}
	case Sync:
		if g.endedCount > 0 {
			return describe(k) + ": " + g.endedList(-1, "node "), true
		}
	}
	return "", false
}

// complete builds the OK reply of key (pending as c, or nil for a call that
// completes on arrival), removes c and caches the reply.
func (g *Group) complete(k callKey, c *call, out []Reply) []Reply {
	if c != nil {
		g.remove(c)
	}
	rep := Reply{Node: g.names[k.node], Kind: k.kind, ID: k.id, OK: true}
	if s := g.sent[k.id]; s != nil && k.kind != Sync {
		for i := range g.names {
			if i == k.node || !s.has[i] || (k.kind == WaitAll && !g.isTarget(i, k.role)) {
				continue
			}
			for _, kv := range s.pairs[i] {
				rep.Data = append(rep.Data, Message{Sender: g.names[i], Key: kv.Key, Value: kv.Value})
			}
		}
	}
	g.cache[k] = rep
	out = append(out, rep)
	if len(rep.Data) > 0 {
		out[len(out)-1].Data = slices.Clone(rep.Data)
	}
	return out
}

// fail removes c and appends its failure.
func (g *Group) fail(c *call, msg string, out []Reply) []Reply {
	g.remove(c)
	return append(out, Reply{Node: g.names[c.key.node], Kind: c.key.kind, ID: c.key.id, Err: msg})
}

// remove forgets the pending call c everywhere.
func (g *Group) remove(c *call) {
	n := c.key.node
	g.pending[n] = nil
	heap.Remove(&g.heap, c.hidx)
	switch c.key.kind {
	case Wait, WaitAll:
		delete(g.sent[c.key.id].waiters, n)
	case Sync:
		if b := g.syncs[c.key.id]; b != nil && b.arrived[n] {
			b.arrived[n] = false
			b.count--
		}
	}
}

// expire fails every pending call whose deadline is <= now.
func (g *Group) expire(now time.Time, out []Reply) []Reply {
	for len(g.heap) > 0 && !g.heap[0].deadline.After(now) {
		c := g.heap[0]
		out = g.fail(c, g.timeoutMessage(c), out)
	}
	return out
}

func (g *Group) timeoutMessage(c *call) string {
	k := c.key
	head := fmt.Sprintf("%s timed out after %v", describe(k), c.timeout)
	var missing []string
	switch k.kind {
	case Wait:
		return head + ": no other node sent it"
	case WaitAll:
		for _, i := range g.targets(k.role) {
			if i != k.node && !g.hasSent(k.id, i) {
				missing = append(missing, g.names[i])
			}
		}
	case Sync:
		b := g.syncs[k.id]
		for i := range g.names {
			if b == nil || !b.arrived[i] {
				missing = append(missing, g.names[i])
			}
		}
	}
	return head + ": waiting for " + strings.Join(missing, ", ")
}

func (g *Group) sentFor(id string) *sentID {
	s := g.sent[id]
	if s == nil {
		n := len(g.names)
		s = &sentID{
			has:       make([]bool, n),
			pairs:     make([][]KV, n),
			roleCount: map[string]int{},
			waiters:   map[int]struct{}{},
		}
		g.sent[id] = s
	}
	return s
}

func (g *Group) hasSent(id string, i int) bool {
	s := g.sent[id]
	return s != nil && s.has[i]
}

// targets are the node indexes of role ("" = all), sorted by name.
func (g *Group) targets(role string) []int {
	if role != "" {
		return g.roleMembers[role]
	}
	all := make([]int, len(g.names))
	for i := range all {
		all[i] = i
	}
	return all
}

func (g *Group) isTarget(i int, role string) bool { return role == "" || g.roles[i] == role }

func (g *Group) nodeEnded(i int) string { return "node " + g.names[i] + " " + g.reasons[i] }

// endedList lists the ended nodes other than skip, each as prefix+name+reason.
func (g *Group) endedList(skip int, prefix string) string {
	var parts []string
	for i := range g.names {
		if i != skip && g.ended[i] {
			parts = append(parts, prefix+g.names[i]+" "+g.reasons[i])
		}
	}
	return strings.Join(parts, ", ")
}

// describe is the head of a message: "sync 'x'", "wait-all 'x' (role r)".
func describe(k callKey) string {
	s := fmt.Sprintf("%s '%s'", k.kind, k.id)
	if k.role != "" {
		s += fmt.Sprintf(" (role %s)", k.role)
	}
	return s
}

func sortReplies(out []Reply) []Reply {
	slices.SortStableFunc(out, func(a, b Reply) int { return strings.Compare(a.Node, b.Node) })
	return out
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// callHeap orders pending calls by deadline, then node.
type callHeap []*call

func (h callHeap) Len() int { return len(h) }
func (h callHeap) Less(i, j int) bool {
	if c := h[i].deadline.Compare(h[j].deadline); c != 0 {
		return c < 0
	}
	return cmp.Less(h[i].key.node, h[j].key.node)
}
func (h callHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *callHeap) Push(x any) {
	c := x.(*call)
	c.hidx = len(*h)
	*h = append(*h, c)
}
func (h *callHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	c.hidx = -1
	return c
}
