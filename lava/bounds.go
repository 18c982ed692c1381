package lava

import (
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/jobs/tomlfile"
)

// Bounds of a LAVA job file: it comes from a submitter, so its size and
// nesting are checked before it is decoded, and what its aliases expand
// to before it is imported (a "billion laughs" file is small).
const (
	MaxSize  = tomlfile.MaxSize  // bytes
	MaxDepth = tomlfile.MaxDepth // mappings and sequences nested in one another
	MaxNodes = 1 << 15           // entries and items; nodes after expanding aliases
)

// CheckBounds scans data once, without decoding it, for its size and the
// nesting of its block and flow collections (outside quoted and block
// scalars and comments). It errs on the side of counting too deep.
func CheckBounds(file string, data []byte) error {
	if len(data) > MaxSize {
		return jobs.Errors{{File: file, Msg: fmt.Sprintf("the file is %d bytes; at most %d are allowed", len(data), MaxSize)}}
	}
	s := yamlScan{line: 1, block: -1}
	for start := 0; start < len(data); s.line++ {
		end := start
		for end < len(data) && data[end] != '\n' {
			end++
		}
		if msg := s.scanLine(data[start:end]); msg != "" {
			return jobs.Errors{{File: file, Line: s.line, Msg: msg}}
		}
		start = end + 1
	}
	return nil
}

type level struct {
	indent, depth int
	dash          bool // a sequence entry
}

// yamlScan is the state of CheckBounds between lines.
type yamlScan struct {
	line   int
	levels [MaxDepth + 1]level // open block collections, outermost first
	n      int
	flow   int  // open flow collections
	quote  byte // the quote of a quoted scalar that goes on
	block  int  // >= 0: in a block scalar of a line indented so
	nodes  int  // block entries, flow collections and their items
}

func (s *yamlScan) count() string {
	if s.nodes++; s.nodes > MaxNodes {
		return fmt.Sprintf("more than %d mapping and sequence entries", MaxNodes)
	}
	return ""
}

func (s *yamlScan) depth() int {
	if s.n == 0 {
		return s.flow
	}
	return s.levels[s.n-1].depth + s.flow
}

func (s *yamlScan) tooDeep() string {
	if s.depth() > MaxDepth {
		return fmt.Sprintf("mappings and sequences are nested more than %d deep", MaxDepth)
	}
	return ""
}

func (s *yamlScan) scanLine(l []byte) string {
	indent := 0
	for indent < len(l) && l[indent] == ' ' {
		indent++
	}
	blank := indent == len(l) || l[indent] == '#' || l[indent] == '\r'
	if s.block >= 0 {
		if blank || indent > s.block {
			return "" // content of the block scalar
		}
		s.block = -1
	}
	if s.quote != 0 {
		i := s.endQuote(l, 0)
		if i < 0 {
			return ""
		}
		return s.scanRest(l, i+1, indent, false)
	}
	if blank {
		return ""
	}
	i := indent
	if s.flow == 0 {
		var msg string
		if i, msg = s.entry(l, indent); msg != "" {
			return msg
		}
	}
	return s.scanRest(l, i, indent, true)
}

// entry opens the block level of a line indented by indent, and returns
// where the line goes on after its "- " sequence entries.
func (s *yamlScan) entry(l []byte, indent int) (int, string) {
	dashes, i := 0, indent
	for i < len(l) && l[i] == '-' && (i+1 == len(l) || l[i+1] == ' ') {
		dashes++
		for i++; i < len(l) && l[i] == ' '; i++ {
		}
	}
	dash := dashes > 0
	if msg := s.count(); msg != "" {
		return i, msg
	}
	for s.n > 0 {
		top := s.levels[s.n-1]
		if top.indent < indent || top.indent == indent && dash && !top.dash {
			break // a child, or a sequence under its key
		}
		s.n--
	}
	depth := max(dashes, 1)
	if dash && hasKey(l[i:]) {
		depth++ // the mapping in the entry
	}
	if s.n > 0 {
		depth += s.levels[s.n-1].depth
	}
	if s.n == len(s.levels) || depth > MaxDepth {
		return i, fmt.Sprintf("mappings and sequences are nested more than %d deep", MaxDepth)
	}
	s.levels[s.n] = level{indent: indent, depth: depth, dash: dash}
	s.n++
	return i, ""
}

// hasKey tells whether l (outside quotes) has a "key:" in it.
func hasKey(l []byte) bool {
	var q byte
	for i, c := range l {
		switch {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '"' || c == '\'':
			q = c
		case c == '#' && (i == 0 || l[i-1] == ' '):
			return false
		case c == ':' && (i+1 == len(l) || l[i+1] == ' ' || l[i+1] == '\r'):
			return true
		}
	}
	return false
}

// scanRest scans l from i for flow collections, quoted scalars, block
// scalar indicators and comments.
func (s *yamlScan) scanRest(l []byte, i, indent int, valueStart bool) string {
	// valueStart: at the start of a value, where a quote or bracket starts one
	for ; i < len(l); i++ {
		c := l[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			continue
		case c == '#' && (i == 0 || l[i-1] == ' ' || l[i-1] == '\t'):
			return ""
		case (c == '"' || c == '\'') && (valueStart || s.flow > 0 && (l[i-1] == ' ' || l[i-1] == ',')):
			s.quote = c
			if i = s.endQuote(l, i+1); i < 0 {
				return ""
			}
		case (c == '[' || c == '{') && (valueStart || s.flow > 0):
			s.flow++
			if msg := s.tooDeep(); msg != "" {
				return msg
			}
			if msg := s.count(); msg != "" {
				return msg
			}
		case c == ',' && s.flow > 0:
			if msg := s.count(); msg != "" {
				return msg
			}
		case (c == ']' || c == '}') && s.flow > 0:
			s.flow--
		case (c == '|' || c == '>') && valueStart && s.flow == 0:
			s.block = indent
			return ""
		}
		valueStart = c == ':' && (i+1 == len(l) || l[i+1] == ' ') || c == '[' || c == '{' || c == ','
	}
	return ""
}

// endQuote finds the end of the quoted scalar s.quote in l from i and
// returns the offset of its closing quote, or -1 if it goes on.
func (s *yamlScan) endQuote(l []byte, i int) int {
	for ; i < len(l); i++ {
		switch c := l[i]; {
		case c == '\\' && s.quote == '"':
			i++
		case c == s.quote:
			if s.quote == '\'' && i+1 < len(l) && l[i+1] == '\'' {
				i++ // '' is a quote in a single-quoted scalar
				continue
			}
			s.quote = 0
			return i
		}
	}
	return -1
}

// checkExpanded counts the nodes of root with aliases expanded, and the
// bytes of their scalars, before the importer walks them.
func checkExpanded(file string, root *yaml.Node) error {
	memo := map[*yaml.Node][2]int{}
	nodes, size := expanded(root, memo, 0)
	if nodes > MaxNodes || size > MaxSize {
		return jobs.Errors{{File: file, Msg: fmt.Sprintf("with its aliases expanded, the file has more than %d nodes or %d bytes", MaxNodes, MaxSize)}}
	}
	return nil
}

// expanded is the number of nodes and scalar bytes of n with aliases
// expanded, capped just above the bounds.
func expanded(n *yaml.Node, memo map[*yaml.Node][2]int, depth int) (nodes, size int) {
	if n == nil {
		return 0, 0
	}
	if v, ok := memo[n]; ok {
		return v[0], v[1]
	}
	if depth > MaxDepth*2 { // an alias cycle, or aliases nested deep
		return MaxNodes + 1, 0
	}
	memo[n] = [2]int{MaxNodes + 1, 0} // while counting: a cycle is too much
	nodes, size = 1, len(n.Value)
	if n.Kind == yaml.AliasNode {
		nodes, size = expanded(n.Alias, memo, depth+1)
	}
	for _, c := range n.Content {
		cn, cs := expanded(c, memo, depth+1)
		nodes, size = min(nodes+cn, MaxNodes+1), min(size+cs, MaxSize+1)
	}
	memo[n] = [2]int{nodes, size}
	return nodes, size
}
