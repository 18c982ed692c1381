package boot

import (
	"fmt"
	"regexp"
)

// Spec is what a job's boot action asks of a board's boot beyond its lab
// entry (LAVA's boot commands, context and auto_login).
type Spec struct {
	// Commands names a command set of the board's lab entry; "": its
	// commands.
	Commands string
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
	return p, nil
}
