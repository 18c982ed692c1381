package boot

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// TemplateError is returned by Fill for a malformed template or a
// placeholder without a value.
type TemplateError struct {
	Template string
	Pos      int      // byte offset of the offending brace in Template
	Name     string   // the unknown placeholder's name; "" for a syntax error
	Known    []string // for an unknown placeholder: the names that have values, sorted
	Reason   string   // for a syntax error: what is wrong
}

func (e *TemplateError) Error() string {
	if e.Name != "" {
		known := "none"
		if len(e.Known) > 0 {
			known = strings.Join(e.Known, ", ")
		}
		return fmt.Sprintf("unknown placeholder {%s} in %q (known: %s)", e.Name, e.Template, known)
	}
	return fmt.Sprintf("%s at position %d in %q", e.Reason, e.Pos, e.Template)
}

// Fill replaces each {name} placeholder in tmpl with vars[name]. A name is
// [a-z_][a-z0-9_]*; "{{" and "}}" stand for literal braces. Values are
// inserted as they are (never expanded again). A placeholder without a value,
// an unclosed or malformed "{" and a lone "}" are *TemplateError errors;
// positions are 0-based byte offsets.
func Fill(tmpl string, vars map[string]string) (string, error) {
	// Fast path: nothing to replace or unescape.
	if !strings.ContainsAny(tmpl, "{}") {
		return tmpl, nil
	}
	var b strings.Builder
	b.Grow(len(tmpl))
	for i := 0; i < len(tmpl); {
		c := tmpl[i]
		switch c {
		case '{':
			if i+1 < len(tmpl) && tmpl[i+1] == '{' {
				b.WriteByte('{')
				i += 2
				continue
			}
			end := strings.IndexAny(tmpl[i+1:], "{}")
			if end < 0 || tmpl[i+1+end] == '{' {
				return "", &TemplateError{Template: tmpl, Pos: i, Reason: `unclosed "{" (write "{{" for a literal brace)`}
			}
			name := tmpl[i+1 : i+1+end]
			if !validName(name) {
				return "", &TemplateError{Template: tmpl, Pos: i,
					Reason: fmt.Sprintf(`invalid placeholder {%s} (names are [a-z_][a-z0-9_]*; write "{{" for a literal brace)`, name)}
			}
			v, ok := vars[name]
			if !ok {
				return "", &TemplateError{Template: tmpl, Pos: i, Name: name, Known: slices.Sorted(maps.Keys(vars))}
			}
			b.WriteString(v)
			i += end + 2
		case '}':
			if i+1 < len(tmpl) && tmpl[i+1] == '}' {
				b.WriteByte('}')
				i += 2
				continue
			}
			return "", &TemplateError{Template: tmpl, Pos: i, Reason: `unmatched "}" (write "}}" for a literal brace)`}
		default:
			j := strings.IndexAny(tmpl[i:], "{}")
			if j < 0 {
				j = len(tmpl) - i
			}
			b.WriteString(tmpl[i : i+j])
			i += j
		}
	}
	return b.String(), nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || c >= 'a' && c <= 'z':
		case i > 0 && c >= '0' && c <= '9':
		default:
			return false
		}
	}
	return true
}
