package sim

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestNFSRoot(t *testing.T) {
	for _, tc := range []struct{ cmdline, server, path string }{
		{"console=ttyO0 root=/dev/nfs rw nfsroot=127.0.0.1:6969:bbb-01/rootfs.tar.gz,tcp,hard", "127.0.0.1:6969", "bbb-01/rootfs.tar.gz"},
		{"root=/dev/nfs nfsroot=10.0.0.1:/srv/nfs/bbb ip=dhcp", "10.0.0.1", "/srv/nfs/bbb"},
		{"nfsroot=/srv/root", "", "/srv/root"},
	} {
		server, path, ok := nfsRoot(tc.cmdline)
		assert.True(t, ok, tc.cmdline)
		assert.Equal(t, tc.server, server, tc.cmdline)
		assert.Equal(t, tc.path, path, tc.cmdline)
	}
	for _, c := range []string{"", "console=ttyS0 root=/dev/mmcblk0p2", "nfsroot=", "nfsroot=host:,tcp"} {
		_, _, ok := nfsRoot(c)
		assert.False(t, ok, c)
	}
}

func FuzzNFSRoot(f *testing.F) {
	f.Add("console=ttyO0 root=/dev/nfs rw nfsroot=127.0.0.1:6969:bbb-01/rootfs.tar.gz,tcp,hard")
	f.Add("nfsroot=:::,,,")
	f.Fuzz(func(t *testing.T, cmdline string) {
		server, path, ok := nfsRoot(cmdline)
		if !ok {
			return
		}
		if path == "" || strings.ContainsAny(path, ", \t\n") || strings.Contains(path, ":") || strings.ContainsAny(server, ", \t\n") {
			t.Fatalf("nfsRoot(%q) = %q, %q", cmdline, server, path)
		}
	})
}
