package boot

import (
	"fmt"
	"regexp"
	"slices"
)

// Spec is what a job's boot action asks of a board's boot beyond its lab
// entry (LAVA's boot commands, context and auto_login).
type Spec struct {
	// Commands names a command set of the board's lab entry; "": its
	// commands.
	Commands string
	// BootCommands are the job's own u-boot commands (templates, as the
	// lab entry's), typed instead of the board's; nil: none.
	BootCommands []string
	// Context gives the placeholders of the board's command templates
	// that its lab entry leaves open.
	Context map[string]string
	// Login replaces the board's login settings where it sets them.
	Login Login
}

// Login is a job's login: regular expressions of the login and password
// prompts, the user and the password ("": the board's).
type Login struct {
	Prompt, User, PasswordPrompt, Password string
	// ShellPrompt is a shell prompt after the login, found on the
	// output's last line, beside the board's own ("": the board's only).
	ShellPrompt string
	// Commands are typed at the shell prompt after the login (LAVA's
	// login_commands), after the board's own.
	Commands []string
}

// Apply returns p with the settings of l that are given.
func (l Login) Apply(p Prompts) (Prompts, error) {
	if l.Prompt != "" {
		re, err := regexp.Compile("(?:" + l.Prompt + `)\s*$`)
		if err != nil {
			return p, fmt.Errorf("login prompt: %w", err)
		}
		p.Login = re
	}
	if l.User != "" {
		p.User = l.User
	}
	if l.PasswordPrompt != "" {
		re, err := regexp.Compile("(?:" + l.PasswordPrompt + `)\s*$`)
		if err != nil {
			return p, fmt.Errorf("password prompt: %w", err)
		}
		p.PasswordPrompt = re
	}
	if l.Password != "" {
		p.Password = l.Password
	}
	if l.ShellPrompt != "" {
		// Found on the output's last line, as LAVA's pexpect finds its
		// prompts ("root@bbb:" is the prompt "root@bbb:~# "), beside the
		// board's own (the lab's knowledge of its image).
		re, err := regexp.Compile("(?:(?:" + l.ShellPrompt + `)[^\n]*$)|(?:` + p.Shell.String() + ")")
		if err != nil {
			return p, fmt.Errorf("shell prompt: %w", err)
		}
		p.Shell = re
	}
	if len(l.Commands) > 0 {
		p.Commands = append(slices.Clone(p.Commands), l.Commands...)
	}
	return p, nil
}
