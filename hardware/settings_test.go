package hardware

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/boot"
	"github.com/troupe-lab/troupe/hardware/power"
	"github.com/troupe-lab/troupe/lab"
)

// TestPowerSettings: read-back retries and settle time are the board's.
func TestPowerSettings(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	// An outlet that never switches on: each "on" leaves a line in count.
	p := lab.Power{Kind: "command", On: []string{"sh", "-c", "echo x >> " + count}, Off: []string{"true"}, State: []string{"echo", "off"}}
	for _, tc := range []struct {
		retries, tries int
		settle         time.Duration
	}{{0, 1, 300 * time.Millisecond}, {3, 4, 100 * time.Millisecond}} {
		require.NoError(t, os.WriteFile(count, nil, 0o644))
		p.Retries, p.Settle = tc.retries, tc.settle
		sw, err := newSwitch("rpi-01", p)
		require.NoError(t, err)
		start := time.Now()
		err = sw.On(context.Background())
		took := time.Since(start)
		var ns *power.NotSwitchedError
		require.ErrorAs(t, err, &ns)
		assert.Equal(t, tc.tries, ns.Tries)
		b, _ := os.ReadFile(count)
		assert.Len(t, b, 2*tc.tries, "the on command ran once a try")
		assert.GreaterOrEqual(t, took, time.Duration(tc.tries)*tc.settle, "each try waited the settle time")
		assert.Less(t, took, time.Duration(tc.tries)*tc.settle+5*time.Second)
	}
}

// TestPowerCycleDelay: On waits for the cycle delay after Off, and gives up
// when its context ends first.
func TestPowerCycleDelay(t *testing.T) {
	sw, err := newSwitch("rpi-01", lab.Power{Kind: "command", On: []string{"true"}, Off: []string{"true"},
		State: []string{"true"}, Settle: time.Second, CycleDelay: 700 * time.Millisecond})
	require.NoError(t, err)
	c := sw.(*cycled)
	c.Switch = &recSwitch{}
	ctx := context.Background()
	start := time.Now()
	require.NoError(t, c.On(ctx), "no Off yet: no wait")
	assert.Less(t, time.Since(start), 500*time.Millisecond)
	require.NoError(t, c.Off(ctx))
	off := time.Now()
	require.NoError(t, c.On(ctx))
	assert.GreaterOrEqual(t, time.Since(off), 700*time.Millisecond)

	require.NoError(t, c.Off(ctx))
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err = c.On(short)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "waiting 700ms after power off")
	assert.Equal(t, []string{"on", "off", "on", "off"}, c.Switch.(*recSwitch).calls)
}

type recSwitch struct {
	mu    sync.Mutex
	calls []string
}

func (r *recSwitch) rec(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}
func (r *recSwitch) On(context.Context) error            { r.rec("on"); return nil }
func (r *recSwitch) Off(context.Context) error           { r.rec("off"); return nil }
func (r *recSwitch) State(context.Context) (bool, error) { return true, nil }

// recConsole answers every Expect at once and records what boot did.
type recConsole struct{ calls []string }

func (c *recConsole) Expect(_ context.Context, re *regexp.Regexp) ([]string, error) {
	c.calls = append(c.calls, "expect "+re.String())
	return make([]string, re.NumSubexp()+1), nil
}
func (c *recConsole) Send(s string) error { c.calls = append(c.calls, "send "+s); return nil }
func (c *recConsole) Discard()            {}

// TestBootSettings: the board's prompts, login, password, u-boot prompt
// and interrupt string are the ones boot uses.
func TestBootSettings(t *testing.T) {
	bm := lab.BootMethod{Method: "u-boot", Interrupt: "Press SPACE", Commands: []string{"boot"},
		Login: "rpi login:", User: "lab", Password: "s3cret", PasswordPrompt: "Passphrase:",
		ShellPrompt: `lab@rpi:~\$ $`, UBootPrompt: `rpi# $`, InterruptString: " "}
	b := &Board{Switch: &recSwitch{}, name: "rpi-01", hw: lab.Hardware{Boot: bm}}
	con := &recConsole{}
	err := b.Boot(context.Background(), con)
	// The recording console matches nothing in particular: the boot
	// command's answer has no login group, so boot says u-boot came back.
	var ue *boot.UBootError
	require.True(t, err == nil || errors.As(err, &ue), "%v", err)
	assert.Contains(t, con.calls, "expect Press SPACE")
	assert.Contains(t, con.calls, "send  ")
	assert.Contains(t, con.calls, "expect rpi# $")

	bm.Method = "shell"
	b.hw.Boot = bm
	con = &recConsole{}
	require.NoError(t, b.Boot(context.Background(), con))
	assert.Equal(t, []string{
		`expect (rpi login:\s*$)|(Kernel panic - not syncing[^\n]*\n)`,
		"send lab\n", "expect Passphrase:", "send s3cret\n", `expect lab@rpi:~\$ $`,
	}, con.calls)

	// Defaults: as before the settings existed.
	p, err := prompts(lab.BootMethod{Login: "login:", User: "root", ShellPrompt: lab.DefaultShellPrompt, PasswordPrompt: lab.DefaultPasswordPrompt})
	require.NoError(t, err)
	def := boot.DefaultPrompts()
	assert.Equal(t, def.Login.String(), p.Login.String())
	assert.Equal(t, def.Shell.String(), p.Shell.String())
	assert.Equal(t, boot.DefaultPasswordPrompt.String(), p.PasswordPrompt.String())
	assert.Equal(t, boot.DefaultUBootPrompt.String(), lab.DefaultUBootPrompt)
}
