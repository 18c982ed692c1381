package tomlfile

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// keyLines finds the line where every key, table and array element of a
// (syntactically valid) TOML document starts. Keys are paths as described
// in the package documentation. Only the first definition of a path counts.
func keyLines(src string) map[string]int {
	s := &lineScanner{src: src, lines: map[string]int{}, arrays: map[string]int{}}
	for i, c := range src {
		if c == '\n' {
			s.newlines = append(s.newlines, i)
		}
	}
	s.document()
	return s.lines
}

type lineScanner struct {
	src      string
	i        int
	newlines []int          // offsets of '\n'
	lines    map[string]int // path -> line
	arrays   map[string]int // array-of-tables path -> elements seen
}

func (s *lineScanner) peek(k int) byte {
	if s.i+k < len(s.src) {
		return s.src[s.i+k]
	}
	return 0
}

func (s *lineScanner) lineAt(off int) int {
	return sort.SearchInts(s.newlines, off) + 1
}

func (s *lineScanner) record(path string, off int) {
	if _, ok := s.lines[path]; !ok {
		s.lines[path] = s.lineAt(off)
	}
}

func join(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func (s *lineScanner) document() {
	table := ""
	for {
		s.skipBlank()
		if s.i >= len(s.src) {
			return
		}
		start := s.i
		if s.peek(0) == '[' {
			table = s.header()
		} else {
			keys := s.key()
			s.define(table, keys, start)
			if s.peek(0) == '=' {
				s.i++
				s.value(join(table, strings.Join(keys, ".")))
			}
		}
		s.skipLine()
		if s.i == start { // cannot happen on valid TOML; never loop forever
			s.i++
		}
	}
}

// header reads [a.b] or [[a.b]] and returns the path of the table it opens.
func (s *lineScanner) header() string {
	start := s.i
	array := s.peek(1) == '['
	s.i++
	if array {
		s.i++
	}
	keys := s.key()
	path := ""
	for n, k := range keys {
		path = join(path, k)
		last := n == len(keys)-1
		if last && array {
			s.record(path, start)
			idx := s.arrays[path]
			s.arrays[path]++
			path = fmt.Sprintf("%s[%d]", path, idx)
		} else if c := s.arrays[path]; c > 0 {
			path = fmt.Sprintf("%s[%d]", path, c-1)
		}
		s.record(path, start)
	}
	return path
}

// define records a dotted key a.b.c (and a, a.b) at start.
func (s *lineScanner) define(table string, keys []string, start int) {
	path := table
	for _, k := range keys {
		path = join(path, k)
		s.record(path, start)
	}
}

// key reads a possibly dotted, possibly quoted key and the blanks after it.
func (s *lineScanner) key() []string {
	var keys []string
	for {
		s.skipSpace()
		start := s.i
		switch s.peek(0) {
		case '"':
			s.i++
			for s.i < len(s.src) && s.src[s.i] != '"' && s.src[s.i] != '\n' {
				if s.src[s.i] == '\\' {
					s.i++
				}
				s.i++
			}
			s.i++
			raw := s.src[start:min(s.i, len(s.src))]
			if k, err := strconv.Unquote(raw); err == nil {
				keys = append(keys, k)
			} else {
				keys = append(keys, strings.Trim(raw, `"`))
			}
		case '\'':
			s.i++
			for s.i < len(s.src) && s.src[s.i] != '\'' && s.src[s.i] != '\n' {
				s.i++
			}
			keys = append(keys, s.src[start+1:min(s.i, len(s.src))])
			s.i++
		default:
			for s.i < len(s.src) && isBare(s.src[s.i]) {
				s.i++
			}
			keys = append(keys, s.src[start:s.i])
		}
		s.i = min(s.i, len(s.src))
		s.skipSpace()
		if s.peek(0) != '.' || s.i == start {
			return keys
		}
		s.i++
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// value skips the value of path, recording the keys of inline tables and
// the elements of arrays.
func (s *lineScanner) value(path string) {
	s.skipSpace()
	switch {
	case strings.HasPrefix(s.src[s.i:], `"""`):
		s.multiline(`"""`, true)
	case strings.HasPrefix(s.src[s.i:], `'''`):
		s.multiline(`'''`, false)
	case s.peek(0) == '"' || s.peek(0) == '\'':
		q := s.peek(0)
		s.i++
		for s.i < len(s.src) && s.src[s.i] != q && s.src[s.i] != '\n' {
			if q == '"' && s.src[s.i] == '\\' {
				s.i++
			}
			s.i++
		}
		s.i = min(s.i+1, len(s.src))
	case s.peek(0) == '[':
		s.i++
		for n := 0; ; n++ {
			s.skipBlank()
			if s.i >= len(s.src) || s.peek(0) == ']' {
				break
			}
			elem := fmt.Sprintf("%s[%d]", path, n)
			start := s.i
			s.record(elem, s.i)
			s.value(elem)
			s.skipBlank()
			if s.peek(0) == ',' {
				s.i++
			}
			if s.i == start {
				s.i++
			}
		}
		s.i = min(s.i+1, len(s.src))
	case s.peek(0) == '{':
		s.i++
		for {
			s.skipBlank()
			if s.i >= len(s.src) || s.peek(0) == '}' {
				break
			}
			start := s.i
			keys := s.key()
			s.define(path, keys, start)
			if s.peek(0) == '=' {
				s.i++
				s.value(join(path, strings.Join(keys, ".")))
			}
			s.skipBlank()
			if s.peek(0) == ',' {
				s.i++
			}
			if s.i == start {
				s.i++
			}
		}
		s.i = min(s.i+1, len(s.src))
	default: // number, boolean, date-time
		for s.i < len(s.src) && !strings.ContainsRune(",]}#\n", rune(s.src[s.i])) {
			s.i++
		}
	}
}

// multiline skips a multi-line string opened by delim at s.i.
func (s *lineScanner) multiline(delim string, escapes bool) {
	s.i += len(delim)
	for s.i < len(s.src) {
		if escapes && s.src[s.i] == '\\' {
			s.i += 2
			continue
		}
		if strings.HasPrefix(s.src[s.i:], delim) {
			s.i += len(delim)
			for n := 0; n < 2 && s.peek(0) == delim[0]; n++ { // quotes right before the delimiter
				s.i++
			}
			return
		}
		s.i++
	}
	s.i = len(s.src)
}

func (s *lineScanner) skipSpace() {
	for s.peek(0) == ' ' || s.peek(0) == '\t' {
		s.i++
	}
}

// skipBlank skips spaces, newlines and comments.
func (s *lineScanner) skipBlank() {
	for s.i < len(s.src) {
		switch s.src[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		case '#':
			for s.i < len(s.src) && s.src[s.i] != '\n' {
				s.i++
			}
		default:
			return
		}
	}
}

// skipLine skips to the start of the next line.
func (s *lineScanner) skipLine() {
	for s.i < len(s.src) && s.src[s.i] != '\n' {
		s.i++
	}
}
