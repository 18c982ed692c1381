package boot_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/boot"
)

// TestLoginApply: a job's login replaces the board's settings it gives.
func TestLoginApply(t *testing.T) {
	p, err := boot.Login{Prompt: `bbb login:`, User: "me", PasswordPrompt: `Secret:`, Password: "pw"}.Apply(boot.DefaultPrompts())
	require.NoError(t, err)
	assert.True(t, p.Login.MatchString("bbb login: "))
	assert.False(t, p.Login.MatchString("other login: x"))
	assert.Equal(t, "me", p.User)
	assert.True(t, p.PasswordPrompt.MatchString("Secret:"))
	assert.Equal(t, "pw", p.Password)

	p, err = boot.Login{}.Apply(boot.DefaultPrompts())
	require.NoError(t, err)
	assert.Equal(t, boot.DefaultPrompts(), p)

	_, err = boot.Login{Prompt: "("}.Apply(boot.DefaultPrompts())
	assert.ErrorContains(t, err, "login prompt")

	// The job's shell prompts (LAVA's boot prompts) are prompts beside the board's.
	p, err = boot.Login{ShellPrompt: `(?:root@debian:~#)|(?:/ #)`}.Apply(boot.DefaultPrompts())
	require.NoError(t, err)
	assert.True(t, p.Shell.MatchString("root@debian:~# "))
	assert.True(t, p.Shell.MatchString("/ # "))
	assert.True(t, p.Shell.MatchString("root@debian:~# ls"), "on the last line")
	assert.False(t, p.Shell.MatchString("/ # ls\nbin\n"), "on the last line only")
	p, err = boot.Login{ShellPrompt: `=>`}.Apply(boot.DefaultPrompts())
	require.NoError(t, err)
	assert.True(t, p.Shell.MatchString("sim-0:~# "), "the board's own prompt is one still")
	assert.True(t, p.Shell.MatchString("=> "))
	assert.False(t, boot.DefaultPrompts().Shell.MatchString("=> "), "not one of the board's")
	p, err = boot.Login{ShellPrompt: `root@bbb:`}.Apply(boot.DefaultPrompts())
	require.NoError(t, err)
	assert.True(t, p.Shell.MatchString("root@bbb:~# "), "found on the last line, as LAVA finds it")
	_, err = boot.Login{ShellPrompt: "("}.Apply(boot.DefaultPrompts())
	assert.ErrorContains(t, err, "shell prompt")
}
