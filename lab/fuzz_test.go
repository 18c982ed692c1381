package lab_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/jobs"
	"github.com/troupe-lab/troupe/lab"
)

func FuzzParseLab(f *testing.F) {
	f.Add([]byte(labFile))
	f.Add([]byte("board = [{name = \"a\", device_type = \"x\", tags = [\"u\"]}]\n"))
	f.Add([]byte("[[board]]\nname = 'a'\ndevice_type = \"\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := lab.Parse("lab.toml", data)
		if err != nil {
			var errs jobs.Errors
			require.ErrorAs(t, err, &errs)
			return
		}
		require.NotEmpty(t, l.Boards)
		names := map[string]bool{}
		for _, b := range l.Boards {
			assert.NotEmpty(t, b.Name)
			assert.NotEmpty(t, b.DeviceType)
			assert.Equal(t, "sim", b.Backend)
			assert.Positive(t, b.Line)
			assert.False(t, names[b.Name], "duplicate %q", b.Name)
			names[b.Name] = true
		}
	})
}
