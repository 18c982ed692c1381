package lab_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lab"
)

// TestHardwareSettings: every per-board setting is read.
func TestHardwareSettings(t *testing.T) {
	l, err := lab.Parse("lab.toml", []byte(`
[[board]]
name = "rpi-01"
device_type = "rpi4"
backend = "hardware"
[board.console]
kind = "serial"
device = "/dev/ttyUSB0"
baud = 9600
parity = "even"
stop_bits = 2
flow_control = "rtscts"
[board.power]
kind = "sim"
socket = "/run/p.sock"
cycle_delay = "3s"
retries = 0
settle = "500ms"
[board.boot]
method = "u-boot"
interrupt = "Hit any key"
interrupt_string = " "
uboot_prompt = "rpi# $"
commands = ["boot"]
user = "lab"
password = "s3cret"
password_prompt = "Passphrase:"
shell_prompt = "lab@rpi:~\\$ $"

[[board]]
name = "bbb-02"
device_type = "bbb"
backend = "hardware"
[board.console]
kind = "tcp"
address = "127.0.0.1:4001"
mode = "rfc2217"
baud = 57600
parity = "odd"
flow_control = "xonxoff"
reconnect = "30s"
[board.power]
kind = "manual"

[[board]]
name = "bbb-03"
device_type = "bbb"
backend = "hardware"
[board.console]
kind = "tcp"
address = "127.0.0.1:4002"
mode = "telnet"
[board.power]
kind = "manual"
`))
	require.NoError(t, err)
	hw := l.Boards[0].Hardware
	assert.Equal(t, lab.Console{Kind: "serial", Device: "/dev/ttyUSB0", Baud: 9600, Parity: "even", StopBits: 2, Flow: "rtscts"}, hw.Console)
	assert.Equal(t, lab.Power{Kind: "sim", Socket: "/run/p.sock", CycleDelay: 3 * time.Second, Retries: 0, Settle: 500 * time.Millisecond}, hw.Power)
	assert.Equal(t, " ", hw.Boot.InterruptString)
	assert.Equal(t, "rpi# $", hw.Boot.UBootPrompt)
	assert.Equal(t, "lab", hw.Boot.User)
	assert.Equal(t, "s3cret", hw.Boot.Password)
	assert.Equal(t, "Passphrase:", hw.Boot.PasswordPrompt)
	assert.Equal(t, `lab@rpi:~\$ $`, hw.Boot.ShellPrompt)
	assert.Equal(t, lab.Console{Kind: "tcp", Address: "127.0.0.1:4001", Mode: "rfc2217", Reconnect: 30 * time.Second,
		Baud: 57600, Parity: "odd", StopBits: 1, Flow: "xonxoff"}, l.Boards[1].Hardware.Console)
	assert.Equal(t, lab.Console{Kind: "tcp", Address: "127.0.0.1:4002", Mode: "telnet", Reconnect: 10 * time.Second}, l.Boards[2].Hardware.Console)
}

// TestHardwareSettingsStrict: each setting rejects what it cannot be.
func TestHardwareSettingsStrict(t *testing.T) {
	head := "[[board]]\nname = \"b-1\"\ndevice_type = \"x\"\nbackend = \"hardware\"\n"
	serial := "[board.console]\nkind = \"serial\"\ndevice = \"/dev/ttyS0\"\n"
	tcp := "[board.console]\nkind = \"tcp\"\naddress = \"h:1\"\n"
	manual := "[board.power]\nkind = \"manual\"\n"
	tests := []struct{ name, body, want string }{
		{"parity", serial + "parity = \"strange\"\n" + manual, `board "b-1": console.parity: must be one of none, odd, even, mark, space (got "strange")`},
		{"stop bits", serial + "stop_bits = 3\n" + manual, `board "b-1": console.stop_bits: must be 1 or 2 (got 3)`},
		{"flow", serial + "flow_control = \"cts\"\n" + manual, `board "b-1": console.flow_control: must be one of none, rtscts, xonxoff (got "cts")`},
		{"baud huge", serial + "baud = 99999999\n" + manual, `board "b-1": console.baud: must be > 0 and <= 4000000`},
		{"mode", tcp + "mode = \"ssh\"\n" + manual, `board "b-1": console.mode: must be one of raw, telnet, rfc2217 (got "ssh")`},
		{"baud on raw tcp", tcp + "baud = 9600\n" + manual, `board "b-1": console.baud: is for kind = "serial" or mode = "rfc2217"`},
		{"parity on telnet", tcp + "mode = \"telnet\"\nparity = \"odd\"\n" + manual, `board "b-1": console.parity: is for kind = "serial" or mode = "rfc2217"`},
		{"reconnect on serial", serial + "reconnect = \"5s\"\n" + manual, `board "b-1": console.reconnect: is for kind = "tcp"`},
		{"reconnect zero", tcp + "reconnect = \"0s\"\n" + manual, `board "b-1": console.reconnect: must be > 0`},
		{"reconnect not a duration", tcp + "reconnect = \"soon\"\n" + manual, `board "b-1": console.reconnect:`},
		{"cycle delay negative", tcp + manual + "cycle_delay = \"-1s\"\n", `board "b-1": power.cycle_delay: must be >= 0 and <= 1h`},
		{"retries negative", tcp + manual + "retries = -1\n", `board "b-1": power.retries: must be >= 0 and <= 100 (got -1)`},
		{"settle zero", tcp + manual + "settle = \"0s\"\n", `board "b-1": power.settle: must be > 0 and <= 10m`},
		{"uboot prompt on shell", tcp + manual + "[board.boot]\nuboot_prompt = \"=>\"\n", `board "b-1": boot.uboot_prompt: is for method = "u-boot"`},
		{"interrupt string on shell", tcp + manual + "[board.boot]\ninterrupt_string = \" \"\n", `board "b-1": boot.interrupt_string: is for method = "u-boot"`},
		{"bad shell prompt", tcp + manual + "[board.boot]\nshell_prompt = \"(\"\n", `board "b-1": boot.shell_prompt: invalid regexp`},
		{"empty shell prompt", tcp + manual + "[board.boot]\nshell_prompt = \"\"\n", `board "b-1": boot.shell_prompt: must not be empty`},
		{"password prompt without password", tcp + manual + "[board.boot]\npassword_prompt = \"pw:\"\n", `board "b-1": boot.password_prompt: is for boards with a password`},
		{"password two lines", tcp + manual + "[board.boot]\npassword = \"a\\nb\"\n", `board "b-1": boot.password: must be one non-empty line`},
		{"password not a string", tcp + manual + "[board.boot]\npassword = 1234\n", `board "b-1": boot.password:`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := lab.Parse("lab.toml", []byte(head+tc.body))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "board[0]")
		})
	}
}
