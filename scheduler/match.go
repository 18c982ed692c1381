package scheduler

import (
	"cmp"
	"slices"
)

// match matches the nodes of j to boards, each role choosing among the
// boards keep accepts in the order of list(role). It returns the board of
// every node (in NodeNames order) or nil.
func (p *planner) match(j *Job, list func(*spec) []int, keep func(int) bool) []int {
	p.roleCands = p.roleCands[:0]
	p.buf = p.buf[:0]
	nodes := 0
	for ri := range j.Roles {
		r := &j.Roles[ri]
		if r.Count <= 0 {
			p.roleCands = append(p.roleCands, nil)
			continue
		}
		start := len(p.buf)
		for _, i := range list(p.spec(r)) {
			if keep(i) {
				p.buf = append(p.buf, i)
			}
		}
		if len(p.buf)-start < r.Count {
			return nil
		}
		p.roleCands = append(p.roleCands, p.buf[start:len(p.buf):len(p.buf)])
		nodes += r.Count
	}
	p.nodeCands = p.nodeCands[:0]
	for ri, r := range j.Roles {
		for range max(r.Count, 0) {
			p.nodeCands = append(p.nodeCands, p.roleCands[ri])
		}
	}
	ok := p.m.run(p.nodeCands)
	var got []int
	if ok {
		got = make([]int, nodes)
		for n := range nodes {
			got[n] = p.m.boardOf[n]
		}
	}
	p.m.clear()
	return got
}

// spansHosts reports whether the boards got are on more than one host.
func (p *planner) spansHosts(got []int) bool {
	for _, b := range got {
		if p.host[b] != p.host[got[0]] {
			return true
		}
	}
	return false
}

// oneHost matches j as match does, on the boards of one host only: the
// first host, in lab order (of its first candidate), with a board for
// every node. It returns nil if no host has. A host with fewer candidates
// than j has nodes is not searched.
func (p *planner) oneHost(j *Job, list func(*spec) []int, keep func(int) bool) []int {
	nodes := 0
	p.hostBuf = p.hostBuf[:0]
	splits := map[*spec]hostSplit{}
	count := make([]int, p.hosts) // a board two roles list counts twice: it only rules out
	for ri := range j.Roles {
		if j.Roles[ri].Count <= 0 {
			continue
		}
		nodes += j.Roles[ri].Count
		sp := p.spec(&j.Roles[ri])
		hs, ok := splits[sp]
		if !ok {
			hs = p.split(list(sp), keep)
			splits[sp] = hs
		}
		for h := range p.hosts {
			count[h] += hs.at[h+1] - hs.at[h]
		}
	}
	var order []int
	for h := range p.hosts {
		if count[h] >= nodes {
			order = append(order, h)
		}
	}
	// Lab order of the hosts: of their first candidate (the lists are in
	// lab order).
	first := make(map[int]int, len(order))
	for _, h := range order {
		f := len(p.boards)
		for _, hs := range splits {
			if hs.at[h] < hs.at[h+1] {
				f = min(f, hs.cands[hs.at[h]])
			}
		}
		first[h] = f
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(first[a], first[b]) })
	for _, h := range order {
		got := p.match(j, func(sp *spec) []int { return splits[sp].of(h) }, func(int) bool { return true })
		if got != nil {
			return got
		}
	}
	return nil
}

// hostSplit is a list of boards split by host, each host's in list order:
// host h's are cands[at[h]:at[h+1]].
type hostSplit struct{ at, cands []int }

func (hs hostSplit) of(h int) []int { return hs.cands[hs.at[h]:hs.at[h+1]] }

// split splits the boards of l that keep accepts by host (a counting
// sort), in the planner's scratch p.hostBuf (made empty by oneHost).
func (p *planner) split(l []int, keep func(int) bool) hostSplit {
	p.kept = p.kept[:0]
	for _, i := range l {
		if keep(i) {
			p.kept = append(p.kept, i)
		}
	}
	start := len(p.hostBuf)
	n := 2*(p.hosts+1) + len(p.kept)
	p.hostBuf = slices.Grow(p.hostBuf, n)[:start+n]
	at := p.hostBuf[start : start+p.hosts+1]
	next := p.hostBuf[start+p.hosts+1 : start+2*(p.hosts+1)]
	cands := p.hostBuf[start+2*(p.hosts+1):]
	clear(at)
	for _, i := range p.kept {
		at[p.host[i]+1]++
	}
	for h := range p.hosts {
		at[h+1] += at[h]
	}
	copy(next, at)
	for _, i := range p.kept {
		h := p.host[i]
		cands[next[h]] = i
		next[h]++
	}
	return hostSplit{at: at, cands: cands}
}

// matcher finds a maximum bipartite matching of nodes to boards with
// augmenting paths (Kuhn's algorithm), as lab.Assign does: each node prefers
// the first free board in its candidate order. Its arrays are reused across
// calls; clear undoes only what a run touched.
type matcher struct {
	cands   [][]int
	owner   []int    // board → node, or -1
	visited []uint32 // board → stamp of the search that visited it
	stamp   uint32
	boardOf []int // node → board
	touched []int
}

func (m *matcher) init(boards int) {
	m.owner = make([]int, boards)
	for i := range m.owner {
		m.owner[i] = -1
	}
	m.visited = make([]uint32, boards)
}

func (m *matcher) start(cands [][]int) {
	m.cands = cands
	m.boardOf = m.boardOf[:0]
	for range cands {
		m.boardOf = append(m.boardOf, -1)
	}
}

// run matches every node, or reports false.
func (m *matcher) run(cands [][]int) bool {
	m.start(cands)
	for n := range cands {
		m.stamp++
		if !m.augment(n) {
			return false
		}
	}
	return true
}

func (m *matcher) take(b, node int) {
	if m.owner[b] < 0 {
		m.touched = append(m.touched, b)
	}
	m.owner[b] = node
	m.boardOf[node] = b
}

func (m *matcher) augment(node int) bool {
	for _, b := range m.cands[node] {
		if m.owner[b] < 0 && m.visited[b] != m.stamp {
			m.visited[b] = m.stamp
			m.take(b, node)
			return true
		}
	}
	for _, b := range m.cands[node] {
		if m.visited[b] == m.stamp {
			continue
		}
		m.visited[b] = m.stamp
		if m.owner[b] < 0 || m.augment(m.owner[b]) {
			m.take(b, node)
			return true
		}
	}
	return false
}

func (m *matcher) clear() {
	for _, b := range m.touched {
		m.owner[b] = -1
	}
	m.touched = m.touched[:0]
}
