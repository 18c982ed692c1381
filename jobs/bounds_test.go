package jobs_test

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/jobs/tomlfile"
)

const (
	mib = 1 << 20
	// maxCost is what parsing any hostile job file may allocate in total
	// (so also at its peak).
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

// attacks are the files of issue 12 that took gigabytes, and their kin.
var attacks = []struct{ name, src, want string }{
	{"nested arrays, 200 KB", "x = " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000), "job.toml:1: arrays and inline tables are nested more than 32 deep"},
	{"nested inline tables, 40 KB", "x = " + strings.Repeat("{a=", 13000) + "1" + strings.Repeat("}", 13000), "job.toml:1: arrays and inline tables are nested more than 32 deep"},
	{"long table header", "[" + strings.Repeat("a.", 100000) + "a]\n", "job.toml:1: a key has more than 64 dotted parts"},
	{"long dotted key", "name = 'x'\n" + strings.Repeat("a.", 100) + "a = 1\n", "job.toml:2: a key has more than 64 dotted parts"},
	{"long quoted dotted key", strings.Repeat(`"a".`, 100) + "a = 1\n", "job.toml:1: a key has more than 64 dotted parts"},
	{"deep array of tables", "x = [\n" + strings.Repeat("{a = [", 20) + strings.Repeat("]}", 20) + "]", "job.toml:2: arrays and inline tables are nested more than 32 deep"},
	{"1 MiB of nested arrays", "x = " + strings.Repeat("[", mib/2-3) + strings.Repeat("]", mib/2-3), "nested more than 32 deep"},
	{"over 1 MiB", "name = '" + strings.Repeat("x", mib) + "'", "job.toml: the file is 1048585 bytes; at most 1048576 are allowed"},
	{"wide array", "x = [" + strings.Repeat("1,", mib/2-4) + "1]", "job.toml:1: more than 32768 keys, tables and array elements"},
	{"many keys", lines(mib, func(i int) string { return fmt.Sprintf("k%d = 1\n", i) }), "more than 32768 keys, tables and array elements"},
	{"many actions", lines(mib, func(int) string { return "[[action]]\n" }), "more than 32768 keys, tables and array elements"},
	{"many deep dotted keys", lines(mib, func(i int) string { return strings.Repeat("a.", 62) + fmt.Sprintf("b%d = 1\n", i) }), "the keys are nested too deeply too often"},
	{"many deep inline tables", lines(mib, func(i int) string {
		return fmt.Sprintf("k%d = ", i) + strings.Repeat("{a=", 31) + "1" + strings.Repeat("}", 31) + "\n"
	}), "the keys are nested too deeply too often"},
}

// lines is the lines line(0), line(1)... up to size bytes.
func lines(size int, line func(int) string) string {
	var b strings.Builder
	for i := 0; ; i++ {
		l := line(i)
		if b.Len()+len(l) > size {
			return b.String()
		}
		b.WriteString(l)
	}
}

// TestHostileInputsRejected: each attack is an error before the file is
// decoded, which costs next to nothing.
func TestHostileInputsRejected(t *testing.T) {
	for _, tc := range attacks {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			cost := allocated(func() { _, err = jobs.Parse("job.toml", []byte(tc.src)) })
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Less(t, cost, uint64(64<<10), "allocated %d bytes", cost)
		})
	}
}

// TestHostileInputsWithinBounds: the costliest files that pass the bounds
// check, as large as it lets them be, cost less than maxCost to parse.
func TestHostileInputsWithinBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		line func(int) string
	}{
		{"wide array", func(i int) string { return fmt.Sprintf("x%d = [", i) + strings.Repeat("1,", 1000) + "1]\n" }},
		{"wide array of strings", func(i int) string { return fmt.Sprintf("x%d = [", i) + strings.Repeat("'',", 1000) + "'']\n" }},
		{"many keys", func(i int) string { return fmt.Sprintf("k%d=1\n", i) }},
		{"many tables", func(i int) string { return fmt.Sprintf("[t%d]\n", i) }},
		{"many actions", func(int) string { return "[[action]]\n" }},
		{"many inline actions", func(int) string { return "action = [{},{},{},{},{},{},{},{},{},{}]\n" }},
		{"many bad actions", func(i int) string { return "[[action]]\ntype = 'x'\nroles = ['a', 'b']\nname = 1\n" }},
		{"many deep arrays", func(i int) string {
			return fmt.Sprintf("k%d=", i) + strings.Repeat("[", 32) + strings.Repeat("]", 32) + "\n"
		}},
		{"many deep inline tables", func(i int) string {
			return fmt.Sprintf("k%d=", i) + strings.Repeat("{a=", 31) + "1" + strings.Repeat("}", 31) + "\n"
		}},
		{"many long headers", func(i int) string { return "[" + strings.Repeat("a.", 62) + fmt.Sprintf("b%d]\n", i) }},
		{"many long dotted keys", func(i int) string { return strings.Repeat("a.", 62) + fmt.Sprintf("b%d = 1\n", i) }},
		{"many roles", func(i int) string {
			return fmt.Sprintf("[roles.r%d]\ndevice_type = 'sim'\ncount = 1\ntags = ['a', 'b']\n", i)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := largestWithin(t, tc.line)
			var err error
			cost := allocated(func() { _, err = jobs.Parse("job.toml", src) })
			require.Error(t, err) // none of them is a valid job
			assert.Less(t, cost, uint64(maxCost), "%d bytes allocated parsing %d bytes", cost, len(src))
			t.Logf("%d bytes: %.1f MiB allocated", len(src), float64(cost)/mib)
		})
	}
}

// largestWithin is the longest run of line(0), line(1)... of at most
// MaxSize bytes that passes the bounds check.
func largestWithin(t testing.TB, line func(int) string) []byte {
	t.Helper()
	var src []byte
	ends := []int{0} // where each line ends
	for i := 0; len(src) <= tomlfile.MaxSize; i++ {
		src = append(src, line(i)...)
		ends = append(ends, len(src))
	}
	n := sort.Search(len(ends), func(i int) bool { // the first number of lines too many
		return ends[i] > tomlfile.MaxSize || tomlfile.CheckBounds("job.toml", src[:ends[i]]) != nil
	})
	require.Greater(t, n, 1)
	return src[:ends[n-1]]
}

func TestBoundsLimitsAreInclusive(t *testing.T) {
	for _, tc := range []struct{ name, src string }{
		{"32 nested arrays", "x = " + strings.Repeat("[", 32) + strings.Repeat("]", 32)},
		{"64-part key", strings.Repeat("a.", 63) + "a = 1"},
		{"64-part header", "[" + strings.Repeat("a.", 63) + "a]"},
		{"brackets and dots in strings and comments", "x = \"" + strings.Repeat("[{.", 100) + "\" # " + strings.Repeat("[.", 100) + "\n" +
			"y = '" + strings.Repeat("[.", 100) + "'\nz = '''\n" + strings.Repeat("[.", 100) + "\n'''\nw = \"\"\"\n\\\"" + strings.Repeat("[.", 100) + "\"\"\"\n"},
		{"stray closers earn no credit", "x = 1 # ]]]]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.NoError(t, tomlfile.CheckBounds("f.toml", []byte(tc.src)))
		})
	}
	assert.Error(t, tomlfile.CheckBounds("f.toml", []byte("x = "+strings.Repeat("[", 33)+strings.Repeat("]", 33))))
	assert.Error(t, tomlfile.CheckBounds("f.toml", []byte(strings.Repeat("a.", 64)+"a = 1")))
	assert.Error(t, tomlfile.CheckBounds("f.toml", []byte("[["+strings.Repeat("a.", 64)+"a]]")))
}

// BenchmarkParseHostile: the costliest job files within the bounds.
func BenchmarkParseHostile(b *testing.B) {
	for _, bc := range []struct {
		name string
		line func(int) string
	}{
		{"keys", func(i int) string { return fmt.Sprintf("k%d=1\n", i) }},
		{"deep arrays", func(i int) string {
			return fmt.Sprintf("k%d=", i) + strings.Repeat("[", 32) + strings.Repeat("]", 32) + "\n"
		}},
		{"long dotted keys", func(i int) string { return strings.Repeat("a.", 62) + fmt.Sprintf("b%d = 1\n", i) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			src := largestWithin(b, bc.line)
			b.SetBytes(int64(len(src)))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = jobs.Parse("job.toml", src)
			}
		})
	}
}

// TestLoadReadsAtMostMaxSize: a file that never ends is read only as far
// as the size bound.
func TestLoadReadsAtMostMaxSize(t *testing.T) {
	var err error
	cost := allocated(func() { _, err = jobs.Load("/dev/zero") })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "/dev/zero: the file is 1048577 bytes; at most 1048576 are allowed")
	assert.Less(t, cost, uint64(8*mib))
}
