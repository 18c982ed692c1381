package lab_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lab"
)

// TestLAVAMirrors: a lab file's [lava_mirrors] maps URL prefixes to local
// directories, relative ones under the lab file's directory; a key that
// is not a URL prefix or a value that is not a directory name is an error
// naming the file, line and key.
func TestLAVAMirrors(t *testing.T) {
	src := labFile + `
[lava_mirrors]
"https://git.example.org/" = "mirror/git"
"file:///srv/images/" = "/data/images"
`
	l, err := lab.Parse("/labs/a/lab.toml", []byte(src))
	require.NoError(t, err)
	assert.Equal(t, []lab.LAVAMirror{{URL: "file:///srv/images/", Dir: "/data/images"}, {URL: "https://git.example.org/", Dir: "/labs/a/mirror/git"}}, l.LAVAMirrors)

	for _, tc := range []struct{ body, want string }{
		{`"git.example.org" = "m"`, `lab.toml:12: lava_mirrors.git.example.org: a mirror's key is a URL prefix`},
		{`"ssh://git.example.org/" = "m"`, `lab.toml:12: lava_mirrors.ssh://git.example.org/: a mirror's key is a URL prefix`},
		{`"https://git.example.org/" = ""`, `lab.toml:12: lava_mirrors.https://git.example.org/: must name a directory`},
		{`"https://git.example.org/" = 3`, `lab.toml:12: lava_mirrors.https://git.example.org/: must be a string`},
	} {
		_, err := lab.Parse("lab.toml", []byte(labFile+"\n[lava_mirrors]\n"+tc.body+"\n"))
		assert.ErrorContains(t, err, tc.want)
	}
	_, err = lab.Parse("lab.toml", []byte(labFile+"\n[lava_mirror]\n"))
	assert.ErrorContains(t, err, `unknown key "lava_mirror"`)
}
