package boot

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/troupe-lab/troupe/console"
)

// UBoot describes how to boot a board by typing commands at its u-boot
// prompt (e.g. TFTP-loading a kernel and device tree the deploy step put on
// a server).
type UBoot struct {
	// Interrupt is the autoboot countdown text; a key is sent when it
	// appears (nil = DefaultUBootInterrupt).
	Interrupt *regexp.Regexp
	// Prompt is the u-boot prompt (nil = DefaultUBootPrompt).
	Prompt *regexp.Regexp
	// InterruptWith is what is sent to stop autoboot ("" = "\n").
	InterruptWith string
	// Commands are templates (see Fill), sent one by one, each after the
	// prompt. The last one boots the kernel: no prompt is expected after it.
	Commands []string
	// Vars are the placeholder values ({server_ip}, {kernel}, {dtb},
	// {kernel_addr}, ...) from the deploy step.
	Vars map[string]string
	// Errors matches the output of a u-boot command that failed; it is
	// applied line by line to what the command printed before the next
	// prompt (nil = DefaultUBootErrors).
	Errors *regexp.Regexp
	// Prompts are the login and shell prompts, as in Boot (zero value =
	// DefaultPrompts()).
	Prompts Prompts
}

// Defaults for the UBoot fields.
var (
	DefaultUBootInterrupt = regexp.MustCompile(`Hit any key to stop autoboot`)
	DefaultUBootPrompt    = regexp.MustCompile(`(=>|U-Boot>) ?$`)
	DefaultUBootErrors    = regexp.MustCompile(`(?i)(error|bad|not found|unknown command|failed|abort)`)
)

// UBootError: a u-boot command failed (or, for the boot command, u-boot
// came back to its prompt instead of starting the kernel).
type UBootError struct {
	Command string // the command as sent (placeholders filled)
	Line    string // the error line it printed ("" if none matched)
	Output  string // everything it printed before the prompt, echo removed
}

func (e *UBootError) Error() string {
	if e.Line == "" {
		return fmt.Sprintf("u-boot: %q: returned to the u-boot prompt instead of booting", e.Command)
	}
	return fmt.Sprintf("u-boot: %q: %s", e.Command, e.Line)
}

// Named groups used in the regexps built around the caller's ones.
const (
	grpOut    = "troupe_out"
	grpLogin  = "troupe_login"
	grpPanic  = "troupe_panic"
	grpPrompt = "troupe_uboot"
)

// ubootQuiet is how long the u-boot console must stay without a new prompt
// after the autoboot interrupt before commands are typed.
const ubootQuiet = 300 * time.Millisecond

// BootUBoot power-cycles the board, stops u-boot's autoboot, types u.Commands
// at the u-boot prompt and logs in on the booted kernel's console.
//
// All commands are filled before anything is done, so a template error leaves
// the board untouched. A command (but the last) whose output matches u.Errors
// fails with a *UBootError; so does the last one if the u-boot prompt comes
// back instead of a login prompt. A kernel panic fails with ErrKernelPanic.
func BootUBoot(ctx context.Context, pw Power, con Console, u UBoot) error {
	if len(u.Commands) == 0 {
		return errors.New("u-boot: no commands (the last one must boot the kernel)")
	}
	cmds := make([]string, len(u.Commands))
	for i, t := range u.Commands {
		c, err := Fill(t, u.Vars)
		if err != nil {
			return fmt.Errorf("u-boot command %d: %w", i+1, err)
		}
		if strings.ContainsAny(c, "\r\n") {
			return fmt.Errorf("u-boot command %d: %q spans several lines", i+1, c)
		}
		cmds[i] = c
	}
	interrupt := orDefault(u.Interrupt, DefaultUBootInterrupt)
	prompt := orDefault(u.Prompt, DefaultUBootPrompt)
	errLine := orDefault(u.Errors, DefaultUBootErrors)
	p := u.Prompts
	if p.Login == nil && p.Shell == nil && p.User == "" {
		p = DefaultPrompts()
	}
	if p.Login == nil || p.Shell == nil {
		return errors.New("u-boot: Prompts.Login and Prompts.Shell must both be set")
	}
	// What a command printed, up to the prompt that follows it.
	afterCmd, err := regexp.Compile(`^(?P<` + grpOut + `>[\s\S]*?)(?:` + prompt.String() + `)`)
	if err != nil {
		return fmt.Errorf("u-boot prompt %q: %w", prompt, err)
	}
	// After the boot command: the login prompt, a kernel panic, or u-boot's
	// prompt again (the command failed).
	afterBoot, err := regexp.Compile(`^(?P<` + grpOut + `>[\s\S]*?)(?:(?P<` + grpLogin + `>` + p.Login.String() +
		`)|(?P<` + grpPanic + `>` + console.KernelPanic + `)|(?P<` + grpPrompt + `>` + prompt.String() + `))`)
	if err != nil {
		return fmt.Errorf("u-boot prompt %q, login prompt %q: %w", prompt, p.Login, err)
	}

	if err := cyclePower(ctx, pw, con); err != nil {
		return err
	}
	if _, err := con.Expect(ctx, interrupt); err != nil {
		return fmt.Errorf("u-boot prompt never appeared: %w", err)
	}
	key := u.InterruptWith
	if key == "" {
		key = "\n"
	}
	if err := con.Send(key); err != nil {
		return fmt.Errorf("interrupt u-boot autoboot: %w", err)
	}
	if _, err := con.Expect(ctx, prompt); err != nil {
		return fmt.Errorf("u-boot prompt never appeared after interrupting autoboot: %w", err)
	}
	// A key that came late (autoboot already gave up) is an empty command
	// line that prints one more prompt: let it pass before typing, or every
	// command would be answered by the previous one's prompt.
	for range 3 {
		qctx, cancel := context.WithTimeout(ctx, ubootQuiet)
		_, err := con.Expect(qctx, prompt)
		cancel()
		if err == nil {
			continue
		}
		if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("u-boot: wait for the console to settle: %w", err)
		}
		break
	}
	last := len(cmds) - 1
	for i, c := range cmds[:last] {
		if err := con.Send(c + "\n"); err != nil {
			return fmt.Errorf("u-boot: send %q: %w", c, err)
		}
		m, err := con.Expect(ctx, afterCmd)
		if err != nil {
			return fmt.Errorf("u-boot: %q (command %d): wait for prompt: %w", c, i+1, err)
		}
		out := commandOutput(group(afterCmd, m, grpOut), c)
		if line := firstMatchingLine(errLine, out); line != "" {
			return &UBootError{Command: c, Line: line, Output: out}
		}
	}
	c := cmds[last]
	if err := con.Send(c + "\n"); err != nil {
		return fmt.Errorf("u-boot: send %q: %w", c, err)
	}
	m, err := con.Expect(ctx, afterBoot)
	if err != nil {
		return fmt.Errorf("wait for login prompt: %w", err)
	}
	switch {
	case group(afterBoot, m, grpPanic) != "":
		return fmt.Errorf("%w: %s", ErrKernelPanic, strings.TrimSpace(group(afterBoot, m, grpPanic)))
	case group(afterBoot, m, grpLogin) == "" && group(afterBoot, m, grpPrompt) != "":
		out := commandOutput(group(afterBoot, m, grpOut), c)
		return &UBootError{Command: c, Line: firstMatchingLine(errLine, out), Output: out}
	}
	return logIn(ctx, con, p)
}

// cyclePower is Boot's power cycle: off, forget old output, on, check.
func cyclePower(ctx context.Context, pw Power, con Console) error {
	if err := pw.Off(ctx); err != nil {
		return fmt.Errorf("power off: %w", err)
	}
	con.Discard()
	if err := pw.On(ctx); err != nil {
		return fmt.Errorf("power on: %w", err)
	}
	on, err := pw.State(ctx)
	if err != nil {
		return fmt.Errorf("power state: %w", err)
	}
	if !on {
		return fmt.Errorf("power on: the board reports power off after switching it on")
	}
	return nil
}

// logIn answers the login prompt (already consumed), waits for the shell
// and types p.Commands at it.
func logIn(ctx context.Context, con Console, p Prompts) error {
	if err := con.Send(p.User + "\n"); err != nil {
		return fmt.Errorf("log in: %w", err)
	}
	if p.Password != "" {
		prompt := orDefault(p.PasswordPrompt, DefaultPasswordPrompt)
		if _, err := con.Expect(ctx, prompt); err != nil {
			return fmt.Errorf("wait for password prompt: %w", err)
		}
		// The password itself never goes into an error.
		if err := con.Send(p.Password + "\n"); err != nil {
			cause := errors.Unwrap(err)
			if cause == nil {
				cause = errors.New("console write failed")
			}
			return fmt.Errorf("log in: send password: %w", cause)
		}
	}
	if _, err := con.Expect(ctx, p.Shell); err != nil {
		return fmt.Errorf("wait for shell prompt: %w", err)
	}
	for i, c := range p.Commands {
		if strings.ContainsAny(c, "\r\n") {
			return fmt.Errorf("login command %d: %q spans several lines", i+1, c)
		}
		if err := con.Send(c + "\n"); err != nil {
			return fmt.Errorf("login command %d: %w", i+1, err)
		}
		if _, err := con.Expect(ctx, p.Shell); err != nil {
			return fmt.Errorf("login command %d %q: wait for shell prompt: %w", i+1, c, err)
		}
	}
	return nil
}

func orDefault(re, def *regexp.Regexp) *regexp.Regexp {
	if re == nil {
		return def
	}
	return re
}

// group returns the named submatch of m ("" if absent or unmatched).
func group(re *regexp.Regexp, m []string, name string) string {
	if i := re.SubexpIndex(name); i >= 0 && i < len(m) {
		return m[i]
	}
	return ""
}

// commandOutput drops carriage returns and u-boot's echo of cmd (the first
// line, when it ends with the command) from out.
func commandOutput(out, cmd string) string {
	out = strings.ReplaceAll(out, "\r", "")
	first, rest, found := strings.Cut(out, "\n")
	if found && strings.HasSuffix(strings.TrimSpace(first), strings.TrimSpace(cmd)) {
		out = rest
	}
	return strings.TrimSpace(out)
}

// firstMatchingLine returns the first line of out that re matches, trimmed.
func firstMatchingLine(re *regexp.Regexp, out string) string {
	for line := range strings.Lines(out) {
		if re.MatchString(line) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
