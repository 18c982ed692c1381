package tomlfile

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestKeyLines(t *testing.T) {
	src := `# comment [not.a.table]
a = "x # not a comment"
b.c = 1 # dotted
[t]
k = """
line = 1
[fake]
"""
'q.k' = 2
[[arr]]
x = 1
[arr.sub]
y = [
  1,
  { z = 2 },
]
[[arr]]
x = '''
'''
inl = { p = 1, q = { r = 2 } }
[[arr.nested]]
n = 1
`
	want := map[string]int{
		"a": 2, "b": 3, "b.c": 3, "t": 4, "t.k": 5, "t.q.k": 9,
		"arr": 10, "arr[0]": 10, "arr[0].x": 11, "arr[0].sub": 12, "arr[0].sub.y": 13,
		"arr[0].sub.y[0]": 14, "arr[0].sub.y[1]": 15, "arr[0].sub.y[1].z": 15,
		"arr[1]": 17, "arr[1].x": 18, "arr[1].inl": 20, "arr[1].inl.q.r": 20,
		"arr[1].nested": 21, "arr[1].nested[0]": 21, "arr[1].nested[0].n": 22,
	}
	got := keyLines(src)
	for k, line := range want {
		assert.Equal(t, line, got[k], k)
	}
	assert.NotContains(t, got, "fake")
	assert.NotContains(t, got, "not")
	assert.NotContains(t, got, "line")
}

func TestLineFallback(t *testing.T) {
	d := &Doc{lines: map[string]int{"roles": 3, "roles.a": 4, "action[1]": 9}}
	tests := map[string]int{
		"roles.a.count": 4, "roles.b": 3, "action[1].roles[2]": 9, "action[2]": 0, "name": 0, "": 0,
	}
	for key, want := range tests {
		assert.Equal(t, want, d.Line(key), key)
	}
}
