package lava_test

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lava"
)

const (
	mib = 1 << 20
	// maxCost is what importing any hostile LAVA file may allocate in
	// total (so also at its peak).
	maxCost = 64 * mib
)

// allocated is the memory f allocates, in total.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// billionLaughs is the classic: ten aliases of ten aliases of ... .
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("job_name: lol\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	return b.String()
}

// nestedBlocks is depth block mappings (or sequence entries) in one another.
func nestedBlocks(depth int, entry func(indent string) string) string {
	var b strings.Builder
	for i := range depth {
		b.WriteString(entry(strings.Repeat("  ", i)))
	}
	return b.String()
}

func TestHostileLAVARejected(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"nested flow sequences", "job_name: x\nx: " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000), "job.yaml:2: mappings and sequences are nested more than 32 deep"},
		{"nested flow mappings", "x: " + strings.Repeat("{a: ", 13000) + "1" + strings.Repeat("}", 13000), "job.yaml:1: mappings and sequences are nested more than 32 deep"},
		{"nested flow over lines", "x: [\n" + strings.Repeat("[\n", 40) + strings.Repeat("]\n", 40) + "]\n", "job.yaml:32: mappings and sequences are nested more than 32 deep"},
		{"nested block mappings", nestedBlocks(1000, func(in string) string { return in + "a:\n" }), "job.yaml:33: mappings and sequences are nested more than 32 deep"},
		{"nested block sequences", nestedBlocks(1000, func(in string) string { return in + "- \n" }), "job.yaml:33: mappings and sequences are nested more than 32 deep"},
		{"nested compact sequences", "- " + strings.Repeat("- ", 100) + "x\n", "job.yaml:1: mappings and sequences are nested more than 32 deep"},
		{"sequences under keys", nestedBlocks(100, func(in string) string { return in + "- a:\n" }), "job.yaml:17: mappings and sequences are nested more than 32 deep"},
		{"billion laughs", billionLaughs(), "job.yaml: with its aliases expanded, the file has more than 32768 nodes or 1048576 bytes"},
		{"many entries", strings.Repeat("- a\n", 40000), "job.yaml:32769: more than 32768 mapping and sequence entries"},
		{"wide flow sequence", "x: [" + strings.Repeat("a,", 40000) + "a]", "job.yaml:1: more than 32768 mapping and sequence entries"},
		{"over 1 MiB", "job_name: x\n# " + strings.Repeat("x", mib), "job.yaml: the file is 1048590 bytes; at most 1048576 are allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			cost := allocated(func() { _, err = lava.Import("job.yaml", []byte(tc.src)) })
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Less(t, cost, uint64(maxCost), "allocated %d bytes", cost)
			cost = allocated(func() { lava.IsLAVA("job", []byte(tc.src)) })
			assert.Less(t, cost, uint64(maxCost), "IsLAVA allocated %d bytes", cost)
		})
	}
}

func TestLAVABoundsInclusive(t *testing.T) {
	for _, tc := range []struct{ name, src string }{
		{"32 deep in flow", "x: " + strings.Repeat("[", 31) + strings.Repeat("]", 31) + "\n"},
		{"32 deep in blocks", nestedBlocks(31, func(in string) string { return in + "a:\n" }) + strings.Repeat("  ", 31) + "a: 1\n"},
		{"brackets in scalars, quotes, comments and block scalars", "a: echo [[[[ {{{{ x:[[[[\nb: '[[[[ it''s'\nc: \"[[[[ \\\" [[[\"\nd: it's [[[[ # [[[[\ne: |\n  [[[[[[\n    - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -\nf: >-\n  {{{{{{\n"},
		{"multi-line quoted scalar", "a: \"[[[[\n  [[[[ \\\"\n  ]\"\nb: [x]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.NoError(t, lava.CheckBounds("job.yaml", []byte(tc.src)))
		})
	}
	assert.Error(t, lava.CheckBounds("job.yaml", []byte("x: "+strings.Repeat("[", 32)+strings.Repeat("]", 32)+"\n")))
	assert.Error(t, lava.CheckBounds("job.yaml", []byte(nestedBlocks(32, func(in string) string { return in + "a:\n" })+strings.Repeat("  ", 32)+"a: 1\n")))
}

// TestHostileLAVAWithinBounds: the costliest files that pass the bounds
// check, as large as it lets them be, cost less than maxCost to import.
func TestHostileLAVAWithinBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		line func(int) string
	}{
		{"many keys", func(i int) string { return fmt.Sprintf("k%d: 1\n", i) }},
		{"many entries", func(int) string { return "- a\n" }},
		{"wide flow sequence", func(int) string { return "- [" + strings.Repeat("a,", 1000) + "a]\n" }},
		{"many deep flows", func(int) string { return "- " + strings.Repeat("[", 31) + strings.Repeat("]", 31) + "\n" }},
		{"many actions", func(int) string { return "- boot: {method: shell, timeout: {minutes: 1}}\n" }},
		{"many aliases", func(i int) string {
			if i == 0 {
				return "job_name: x\nactions:\n- &a {test: {definitions: [{from: inline, name: t, path: p, repository: {run: {steps: [" + strings.Repeat("x", 10000) + "]}}}]}}\n"
			}
			return "- *a\n"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := largestWithin(t, tc.line)
			var err error
			cost := allocated(func() { _, err = lava.Import("job.yaml", src) })
			require.Error(t, err)
			assert.Less(t, cost, uint64(maxCost), "%d bytes allocated importing %d bytes", cost, len(src))
			t.Logf("%d bytes: %.1f MiB allocated", len(src), float64(cost)/mib)
		})
	}
}

// largestWithin is the longest run of line(0), line(1)... that passes
// the checks before decoding.
func largestWithin(t *testing.T, line func(int) string) []byte {
	t.Helper()
	var src []byte
	ends := []int{0}
	for i := 0; len(src) <= lava.MaxSize; i++ {
		src = append(src, line(i)...)
		ends = append(ends, len(src))
	}
	n := sort.Search(len(ends), func(i int) bool {
		return ends[i] > lava.MaxSize || lava.CheckBounds("job.yaml", src[:ends[i]]) != nil
	})
	require.Greater(t, n, 1)
	return src[:ends[n-1]]
}
