package qemu

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// Missing tells what x86_64 QEMU boards with the default images need that
// this machine lacks, and how to install it; nil if nothing.
func Missing() error {
	var missing []string
	for _, tool := range []string{"qemu-system-x86_64", "busybox", "cpio"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if k, _ := filepath.Glob("/boot/vmlinuz-*"); len(k) == 0 {
		missing = append(missing, "/boot/vmlinuz-*")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("QEMU boards need %s: apt-get install -y qemu-system-x86 busybox-static linux-image-cloud-amd64 cpio (make deps)", strings.Join(missing, ", "))
}
