// Package sandboxid names the host user that confined board processes
// (sim boards' sandboxes, QEMU) run as.
package sandboxid

import "os"

// Nobody is the uid and gid of nobody, which confined processes run as
// when this process is root.
const Nobody = 65534

// IDs is the host uid and gid confined processes run as: this process's
// own when it is not root, nobody's when it is (never root).
func IDs() (uid, gid int) {
	if os.Geteuid() != 0 {
		return os.Geteuid(), os.Getegid()
	}
	return Nobody, Nobody
}
