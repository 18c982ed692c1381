package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// powerFile, in a board's Dir, names the QEMU process of the board while
// it is on: "pid start-time" (the start time, from /proc/pid/stat, tells
// the process from a later one with the same pid).
const powerFile = ".power-on"

// PowerOffLeftover powers off a QEMU board whose harness died with it on
// (kill -9 runs no cleanup): the QEMU process named in dir is killed. A
// board that was off, or whose process is gone, is left alone.
func PowerOffLeftover(ctx context.Context, dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, powerFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("power off leftover qemu board in %s: %w", dir, err)
	}
	if f := strings.Fields(string(data)); len(f) == 2 {
		pid, err := strconv.Atoi(f[0])
		if err == nil && pid > 0 && startTime(pid) == f[1] {
			if err := kill(ctx, pid, f[1]); err != nil {
				return fmt.Errorf("power off leftover qemu board in %s: %w", dir, err)
			}
		}
	}
	return os.Remove(filepath.Join(dir, powerFile))
}

// kill kills process pid and waits until it has died.
func kill(ctx context.Context, pid int, start string) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if st := startTime(pid); st != start || state(pid) == 'Z' {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("process %d still alive after SIGKILL: %w", pid, ctx.Err())
		}
	}
}

// statFields are the fields of /proc/pid/stat after the command name,
// from the state (field 3) on; nil if there is no such process.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// startTime is field 22 of /proc/pid/stat; "" if there is no such process.
func startTime(pid int) string {
	if f := statFields(pid); len(f) > 19 {
		return f[19]
	}
	return ""
}

// state is field 3 of /proc/pid/stat; 0 if there is no such process.
func state(pid int) byte {
	if f := statFields(pid); len(f) > 0 && f[0] != "" {
		return f[0][0]
	}
	return 0
}

// recordPower writes the power file of a board whose QEMU is pid.
func recordPower(dir string, pid int) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rec := fmt.Sprintf("%d %s\n", pid, startTime(pid))
	return os.WriteFile(filepath.Join(dir, powerFile), []byte(rec), 0o600)
}

// clearPower removes the power file of a board that is off.
func clearPower(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.Remove(filepath.Join(dir, powerFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
