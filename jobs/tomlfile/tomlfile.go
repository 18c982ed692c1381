// Package tomlfile decodes TOML configuration files strictly: it reports
// unknown keys, wrong types and invalid values, all of them at once, each
// with the file, line and key it is about.
//
// Keys are written as paths: "roles.server.count", and elements of arrays
// (of tables) as "action[2].timeout", with 0-based indices.
package tomlfile

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Error is one problem in a file.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

// Error formats e as "File:Line: Key: Msg", leaving out the parts that are
// unknown (Line 0, empty Key, empty File).
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a file, in line order.
type Errors []*Error

// Error joins the errors with newlines.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap gives access to the single errors for errors.As and errors.Is.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Doc is a decoded TOML file together with the line of every key. It
// collects the errors found while its tables are read.
type Doc struct {
	file    string
	lines   map[string]int
	errs    Errors
	dropped int // errors past MaxErrors, counted only
}

// MaxErrors is how many errors a Doc keeps; a hostile file could have one
// per line.
const MaxErrors = 100

// Parse decodes data, which was read from file. On a syntax error, or if
// data breaks a bound (MaxSize, MaxDepth, MaxKeyParts; checked before
// decoding), it returns Errors holding one located error.
func Parse(file string, data []byte) (*Doc, Table, error) {
	if err := CheckBounds(file, data); err != nil {
		return nil, Table{}, err
	}
	var m map[string]any
	if _, err := toml.Decode(string(data), &m); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, Table{}, Errors{{File: file, Line: pe.Position.Line, Key: pe.LastKey, Msg: "TOML syntax error: " + pe.Message}}
		}
		return nil, Table{}, Errors{{File: file, Msg: err.Error()}}
	}
	d := &Doc{file: file, lines: keyLines(string(data))}
	return d, Table{doc: d, M: m}, nil
}

// Line is the line where key (a path such as "action[1].roles") is defined.
// For a key that is not in the file it is the line of the closest enclosing
// table that is, or 0 for the top level.
func (d *Doc) Line(key string) int {
	for key != "" {
		if l, ok := d.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

// Errorf records an error about key, at the line of key.
func (d *Doc) Errorf(key, format string, args ...any) {
	d.add(key, d.Line(key), format, args...)
}

func (d *Doc) add(key string, line int, format string, args ...any) {
	if len(d.errs) >= MaxErrors {
		d.dropped++
		return
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Err returns the recorded errors sorted by line, or nil if there are none.
func (d *Doc) Err() error {
	if len(d.errs) == 0 {
		return nil
	}
	sort.SliceStable(d.errs, func(a, b int) bool { return d.errs[a].Line < d.errs[b].Line })
	if d.dropped > 0 {
		return append(d.errs[:len(d.errs):len(d.errs)], &Error{File: d.file, Msg: fmt.Sprintf("and %d more errors", d.dropped)})
	}
	return d.errs
}

// Table is a TOML table at Path ("" for the top level).
type Table struct {
	doc  *Doc
	Path string
	M    map[string]any
}

// Line is the line where t starts (0 for the top level).
func (t Table) Line() int {
	return t.doc.Line(t.Path)
}

// Key is the full path of the key k in t; "" stands for t itself.
func (t Table) Key(k string) string {
	if k == "" {
		return t.Path
	}
	if t.Path == "" {
		return k
	}
	return t.Path + "." + k
}

// Keys returns the keys of t, sorted.
func (t Table) Keys() []string {
	keys := make([]string, 0, len(t.M))
	for k := range t.M {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Has reports whether t defines k.
func (t Table) Has(k string) bool {
	_, ok := t.M[k]
	return ok
}

// Errorf records an error about the key k of t.
func (t Table) Errorf(k, format string, args ...any) {
	t.doc.Errorf(t.Key(k), format, args...)
}

// Only records an error for every key of t that is not in allowed.
func (t Table) Only(allowed ...string) {
	for _, k := range t.Keys() {
		if !contains(allowed, k) {
			t.doc.add(t.Path, t.doc.Line(t.Key(k)), "unknown key %q", k)
		}
	}
}

// Require records an error for every key in keys that t lacks.
func (t Table) Require(keys ...string) {
	for _, k := range keys {
		if !t.Has(k) {
			t.Errorf(k, "is required")
		}
	}
}

// String returns the string at k. ok is false if k is missing or is not a
// string; the latter is recorded as an error.
func (t Table) String(k string) (s string, ok bool) {
	v, found := t.M[k]
	if !found {
		return "", false
	}
	if s, ok = v.(string); !ok {
		t.typeError(k, "a string", v)
	}
	return s, ok
}

// Int is like String, for integers.
func (t Table) Int(k string) (n int64, ok bool) {
	v, found := t.M[k]
	if !found {
		return 0, false
	}
	if n, ok = v.(int64); !ok {
		t.typeError(k, "an integer", v)
	}
	return n, ok
}

// Bool is like String, for booleans.
func (t Table) Bool(k string) (b bool, ok bool) {
	v, found := t.M[k]
	if !found {
		return false, false
	}
	if b, ok = v.(bool); !ok {
		t.typeError(k, "a boolean", v)
	}
	return b, ok
}

// Strings is like String, for arrays of strings.
func (t Table) Strings(k string) ([]string, bool) {
	v, found := t.M[k]
	if !found {
		return nil, false
	}
	arr, ok := v.([]any)
	if !ok {
		t.typeError(k, "an array of strings", v)
		return nil, false
	}
	out := make([]string, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			t.doc.Errorf(fmt.Sprintf("%s[%d]", t.Key(k), i), "must be a string (got %s)", Describe(e))
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// Duration is like String, for durations written as Go duration strings
// ("90s", "1m30s"). Any sign is accepted; callers check the range.
func (t Table) Duration(k string) (time.Duration, bool) {
	v, found := t.M[k]
	if !found {
		return 0, false
	}
	s, ok := v.(string)
	if !ok {
		t.typeError(k, `a duration string such as "90s" or "5m"`, v)
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Errorf(k, "invalid duration %q", s)
		return 0, false
	}
	return d, true
}

// Table returns the table at k; ok is false if k is missing or not a table.
func (t Table) Table(k string) (Table, bool) {
	v, found := t.M[k]
	if !found {
		return Table{}, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.typeError(k, "a table", v)
		return Table{}, false
	}
	return Table{doc: t.doc, Path: t.Key(k), M: m}, true
}

// Tables returns the array of tables at k ([[k]] or k = [{...}]). Elements
// that are not tables are recorded as errors and left out.
func (t Table) Tables(k string) ([]Table, bool) {
	v, found := t.M[k]
	if !found {
		return nil, false
	}
	var elems []any
	switch v := v.(type) {
	case []map[string]any:
		for _, m := range v {
			elems = append(elems, m)
		}
	case []any:
		elems = v
	default:
		t.typeError(k, "an array of tables", v)
		return nil, false
	}
	out := make([]Table, 0, len(elems))
	for i, e := range elems {
		key := fmt.Sprintf("%s[%d]", t.Key(k), i)
		m, ok := e.(map[string]any)
		if !ok {
			t.doc.Errorf(key, "must be a table (got %s)", Describe(e))
			continue
		}
		out = append(out, Table{doc: t.doc, Path: key, M: m})
	}
	return out, true
}

// OneOf returns the string at k, which must be one of allowed ("" if it
// is missing or not allowed, which is recorded as an error).
func (t Table) OneOf(k string, allowed ...string) string {
	v, ok := t.String(k)
	if !ok {
		return ""
	}
	if !slices.Contains(allowed, v) {
		t.Errorf(k, "must be one of %s (got %q)", strings.Join(allowed, ", "), v)
		return ""
	}
	return v
}

// Number returns the number at k: a float, or an integer as a float.
func (t Table) Number(k string) (float64, bool) {
	v, found := t.M[k]
	if !found {
		return 0, false
	}
	switch v := v.(type) {
	case float64:
		return v, true
	case int64:
		return float64(v), true
	}
	t.typeError(k, "a number", v)
	return 0, false
}

func (t Table) typeError(k, want string, got any) {
	t.Errorf(k, "must be %s (got %s)", want, Describe(got))
}

// Describe names the TOML type of v, with the value for scalars, for
// error messages.
func Describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case []any, []map[string]any:
		return "array"
	case map[string]any:
		return "table"
	default:
		return "datetime"
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
