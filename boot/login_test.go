package boot_test

import (
	"context"
	"errors"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/boot"
)

// TestBootPassword: with a password, the user name is followed by the
// password at the password prompt, before the shell prompt.
func TestBootPassword(t *testing.T) {
	p := newFakePower()
	con, b := newFakeLine(t, nil)
	got := make(chan string, 2)
	play(t, p, b, func(b *fakeBoard) {
		defer b.drain()
		if b.print("fake login: ") != nil {
			return
		}
		u, err := b.readLine()
		if err != nil {
			return
		}
		got <- u
		if b.print("Password: ") != nil {
			return
		}
		pw, err := b.readLine()
		if err != nil {
			return
		}
		got <- pw
		if pw == "s3cret\n" {
			_ = b.print("\r\nfake:~$ ")
		}
	})
	pr := boot.DefaultPrompts()
	pr.User, pr.Password = "tester", "s3cret"
	require.NoError(t, boot.Boot(ctxT(t, waitTO), p, con, pr))
	assert.Equal(t, []string{"tester\n", "s3cret\n"}, received(got))
}

// failSend fails every Send after the first n.
type failSend struct {
	recConsole
	n *int
}

func (c failSend) Send(s string) error {
	if *c.n == 0 {
		return errors.New("send " + s + ": console lost")
	}
	*c.n--
	return c.recConsole.Send(s)
}

// TestBootPasswordOrderAndSecrecy: the custom password and shell prompts
// are the ones waited for, and a failed password send does not quote it.
func TestBootPasswordOrderAndSecrecy(t *testing.T) {
	p := newFakePower()
	pr := boot.DefaultPrompts()
	pr.Password = "s3cret"
	pr.PasswordPrompt = regexp.MustCompile(`Passphrase: $`)
	pr.Shell = regexp.MustCompile(`board> $`)
	require.NoError(t, boot.Boot(ctxT(t, waitTO), p, recConsole{p}, pr))
	calls := p.Calls()
	assert.Equal(t, []string{"send root\n", "expect Passphrase: $", "send s3cret\n", "expect board> $"}, calls[len(calls)-4:])

	p = newFakePower()
	one := 1
	err := boot.Boot(context.Background(), p, failSend{recConsole{p}, &one}, pr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "send password")
	assert.NotContains(t, err.Error(), "s3cret")
}

// TestBootUBootInterruptString: the configured string stops autoboot.
func TestBootUBootInterruptString(t *testing.T) {
	p := newFakePower()
	err := boot.BootUBoot(ctxT(t, waitTO), p, recConsole{p}, boot.UBoot{
		Commands: []string{"boot"}, InterruptWith: " ", Prompt: regexp.MustCompile(`U-Boot> $`),
	})
	require.NoError(t, err)
	calls := p.Calls()
	i := indexOf(calls, "expect "+boot.DefaultUBootInterrupt.String())
	require.GreaterOrEqual(t, i, 0, "%q", calls)
	assert.Equal(t, []string{"send  ", "expect U-Boot> $"}, calls[i+1:i+3])
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// TestBootLoginCommands: the login commands are typed at the shell
// prompt after the login, each once the prompt is back; the job's come
// after the board's; a multi-line command is refused before it is sent.
func TestBootLoginCommands(t *testing.T) {
	p := newFakePower()
	pr := boot.DefaultPrompts()
	pr.Commands = []string{"stty cols 200"}
	pr, err := boot.Login{Commands: []string{"export A=1", "cd /srv"}}.Apply(pr)
	require.NoError(t, err)
	require.NoError(t, boot.Boot(ctxT(t, waitTO), p, recConsole{p}, pr))
	shell := "expect " + pr.Shell.String()
	calls := p.Calls()
	assert.Equal(t, []string{"send root\n", shell, "send stty cols 200\n", shell, "send export A=1\n", shell, "send cd /srv\n", shell},
		calls[len(calls)-8:])

	p = newFakePower()
	pr.Commands = []string{"echo a\nrm -rf /"}
	err = boot.Boot(ctxT(t, waitTO), p, recConsole{p}, pr)
	require.ErrorContains(t, err, "login command 1")
	assert.NotContains(t, p.Calls(), "send echo a\nrm -rf /\n")
}
