//go:build !unix

package power

import "os/exec"

// killGroup: elsewhere only the command itself is killed.
func killGroup(cmd *exec.Cmd) {}
