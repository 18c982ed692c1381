package hardware

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/troupe-lab/troupe/boot"
)

// flash runs the board's flasher command, its argv filled with {image}
// and {board}, within its timeout; a failure quotes the end of its output.
func flash(ctx context.Context, board string, argv []string, timeout time.Duration, image string) error {
	abs, err := filepath.Abs(image)
	if err != nil {
		return fmt.Errorf("flash %s: %w", board, err)
	}
	vars := map[string]string{"image": abs, "board": board}
	args := make([]string, len(argv))
	for i, a := range argv {
		if args[i], err = boot.Fill(a, vars); err != nil {
			return fmt.Errorf("flash %s: command: %w", board, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("flash %s: %s did not finish within %s%s", board, args[0], timeout, tail(out.String()))
	}
	if err != nil {
		return fmt.Errorf("flash %s: %s: %w%s", board, args[0], err, tail(out.String()))
	}
	return nil
}

// tail is the last lines of a command's output, for an error message.
func tail(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	s := strings.TrimSpace(strings.Join(lines, " | "))
	if s == "" {
		return ""
	}
	return ": " + s
}
