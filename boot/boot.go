// Package boot brings a board from power-off to a logged-in shell: power
// cycle, wait for the login prompt on the console, log in, wait for the
// shell prompt. Simulated and real boards go through this same code.
package boot

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/troupe-lab/troupe/console"
)

// Power is a board's power switch.
type Power interface {
	On(ctx context.Context) error
	Off(ctx context.Context) error
	State(ctx context.Context) (bool, error)
}

// Console is what boot needs of a board console.
type Console interface {
	Expect(ctx context.Context, re *regexp.Regexp) ([]string, error)
	Send(s string) error
	Discard()
}

// Prompts describe what the board prints and what to answer.
type Prompts struct {
	Login *regexp.Regexp // the login prompt
	User  string         // typed at the login prompt
	Shell *regexp.Regexp // the shell prompt after login
	// Password, when not empty, is typed at PasswordPrompt (nil =
	// DefaultPasswordPrompt) after the user.
	Password       string
	PasswordPrompt *regexp.Regexp
	// Commands are typed at the shell prompt after the login, one at a
	// time, each waiting for the prompt again (LAVA's auto_login
	// login_commands).
	Commands []string
}

// DefaultPasswordPrompt is the password prompt of login(1).
var DefaultPasswordPrompt = regexp.MustCompile(`[Pp]assword:\s*$`)

// The default prompts, compiled once: every board's boot uses them.
var (
	defaultLogin = regexp.MustCompile(`login:\s*$`)
	defaultShell = regexp.MustCompile(`[#$]\s*$`)
	// defaultLoginOrPanic is loginOrPanic(defaultLogin).
	defaultLoginOrPanic = loginOrPanic(defaultLogin)
)

// DefaultPrompts fit a Linux board with a getty and a root login.
func DefaultPrompts() Prompts {
	return Prompts{
		Login: defaultLogin,
		User:  "root",
		Shell: defaultShell,
	}
}

// loginOrPanic matches the login prompt (submatch 1) or a kernel panic
// (submatch 2).
func loginOrPanic(login *regexp.Regexp) *regexp.Regexp {
	return regexp.MustCompile(`(` + login.String() + `)|(` + console.KernelPanic + `)`)
}

// ErrKernelPanic: the board's kernel panicked while booting.
var ErrKernelPanic = errors.New("kernel panic during boot")

// Boot power-cycles the board and logs in on its console.
func Boot(ctx context.Context, pw Power, con Console, p Prompts) error {
	if err := cyclePower(ctx, pw, con); err != nil {
		return err
	}
	// A kernel panic on the way ends the wait at once: the board will not
	// get to a login prompt.
	login := defaultLoginOrPanic
	if p.Login.String() != defaultLogin.String() {
		login = loginOrPanic(p.Login)
	}
	m, err := con.Expect(ctx, login)
	if err != nil {
		return fmt.Errorf("wait for login prompt: %w", err)
	}
	if len(m) == 3 && m[2] != "" {
		return fmt.Errorf("%w: %s", ErrKernelPanic, strings.TrimSpace(m[2]))
	}
	return logIn(ctx, con, p)
}
