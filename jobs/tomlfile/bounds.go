package tomlfile

import (
	"fmt"
	"io"
	"os"
)

// Bounds of a file, checked before it is decoded: job, lab and scenario
// files come from submitters, and the TOML decoder's cost grows faster
// than its input (100 000 nested arrays in 200 KB took 24 GB; its cost
// for a key grows with the square of the key's depth).
const (
	MaxSize     = 1 << 20 // bytes
	MaxDepth    = 32      // arrays and inline tables nested in one another
	MaxKeyParts = 64      // parts of a dotted key or table header
	MaxValues   = 1 << 15 // keys, tables and array elements
	// MaxKeyCost bounds the sum, over the keys of the file, of the square
	// of each key's depth (table header parts, then the keys of the inline
	// tables and arrays it is in, then its own parts).
	MaxKeyCost = 1 << 18
)

// bounds is the state of checkBounds.
type bounds struct {
	line   int
	depth  int               // open arrays and inline tables
	within [MaxDepth + 1]int // key depth each open one adds
	header int               // parts of the current table header
	parts  int               // parts of the key being read
	key    int               // parts of the last complete key
	values int
	cost   int
}

// CheckBounds scans data, read from file, once and returns an Errors
// holding one located error if it breaks a bound (see the constants),
// counting outside strings and comments. Parse calls it first.
func CheckBounds(file string, data []byte) error {
	if line, msg := checkBounds(data); msg != "" {
		return Errors{{File: file, Line: line, Msg: msg}}
	}
	return nil
}

// checkBounds is CheckBounds without allocating: line is where the bound
// is broken (0 for the size).
func checkBounds(data []byte) (line int, msg string) {
	if len(data) > MaxSize {
		return 0, fmt.Sprintf("the file is %d bytes; at most %d are allowed", len(data), MaxSize)
	}
	b := bounds{line: 1, parts: 1}
	lineStart := true // only blanks so far on this line
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c == ' ' || c == '\t' || c == '\r' {
			continue
		}
		first := lineStart
		lineStart = false
		switch c {
		case '\n':
			b.line++
			b.parts, b.key = 1, 0
			lineStart = true
		case '#':
			for i+1 < len(data) && data[i+1] != '\n' {
				i++
			}
		case '"', '\'':
			end, lines := skipString(data, i)
			i, b.line = end, b.line+lines
		case '[', '{':
			if msg := b.open(c, first); msg != "" {
				return b.line, msg
			}
		case ']', '}':
			if msg := b.close(); msg != "" {
				return b.line, msg
			}
		case '=':
			if msg := b.endKey(); msg != "" {
				return b.line, msg
			}
		case ',':
			if msg := b.count(); msg != "" {
				return b.line, msg
			}
			b.parts, b.key = 1, 0
		case '.':
			// Outside strings, a dot separates the parts of a key; in
			// values, a float or time has at most one.
			if b.parts++; b.parts > MaxKeyParts {
				return b.line, fmt.Sprintf("a key has more than %d dotted parts", MaxKeyParts)
			}
		}
	}
	return 0, ""
}

// open is '[' or '{': an array, an inline table, or (first on its line,
// outside any) a table header.
func (b *bounds) open(c byte, first bool) string {
	if msg := b.count(); msg != "" {
		return msg
	}
	if first && c == '[' && b.depth == 0 {
		b.header = -1 // reading a header: its parts end at ']'
	}
	if b.depth++; b.depth > MaxDepth {
		return fmt.Sprintf("arrays and inline tables are nested more than %d deep", MaxDepth)
	}
	b.within[b.depth] = 1
	if b.key > 0 { // the value of a key
		b.within[b.depth] = b.key
		b.key = 0
	}
	b.parts = 1
	return ""
}

func (b *bounds) close() string {
	if b.header < 0 && b.depth <= 2 {
		b.header = b.parts
		if msg := b.addCost(b.parts); msg != "" {
			return msg
		}
	}
	b.depth = max(b.depth-1, 0) // a stray closer earns no credit
	b.parts = 1
	return ""
}

// endKey is '=': the key read so far is complete.
func (b *bounds) endKey() string {
	if msg := b.count(); msg != "" {
		return msg
	}
	d := b.parts + max(b.header, 0)
	for _, w := range b.within[1 : b.depth+1] {
		d += w
	}
	b.key = b.parts
	b.parts = 1
	return b.addCost(d)
}

func (b *bounds) addCost(depth int) string {
	if b.cost += depth * depth; b.cost > MaxKeyCost {
		return fmt.Sprintf("the keys are nested too deeply too often (cost %d; at most %d: the sum of the squares of the keys' depths)", b.cost, MaxKeyCost)
	}
	return ""
}

func (b *bounds) count() string {
	if b.values++; b.values > MaxValues {
		return fmt.Sprintf("more than %d keys, tables and array elements", MaxValues)
	}
	return ""
}

// skipString returns the offset of the last byte of the string starting
// at data[i] (a quote), and the newlines in it. An unterminated string
// ends at the end of the line (single-line) or of the data (multi-line);
// the decoder reports the error.
func skipString(data []byte, i int) (end, lines int) {
	q := data[i]
	multi := i+2 < len(data) && data[i+1] == q && data[i+2] == q
	if !multi && i+1 < len(data) && data[i+1] == q { // empty string
		return i + 1, 0
	}
	j := i + 1
	if multi {
		j = i + 3
	}
	for ; j < len(data); j++ {
		switch data[j] {
		case '\\':
			if q == '"' {
				j++ // skip the escaped byte (a newline too, in a multi-line string)
				if j < len(data) && data[j] == '\n' {
					lines++
				}
			}
		case '\n':
			if !multi {
				return j - 1, lines
			}
			lines++
		case q:
			if !multi {
				return j, lines
			}
			if j+2 < len(data) && data[j+1] == q && data[j+2] == q {
				// Up to two more quotes may belong to the string: """a""""".
				j += 2
				for k := 0; k < 2 && j+1 < len(data) && data[j+1] == q; k++ {
					j++
				}
				return j, lines
			}
		}
	}
	return len(data) - 1, lines
}

// ReadFile reads the file at path, but never more than one byte over
// MaxSize: whatever is longer is refused by CheckBounds anyway, and a
// file such as /dev/zero never ends.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxSize+1))
}
