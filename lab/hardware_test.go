package lab_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/lab"
)

func TestHardwareBoards(t *testing.T) {
	l, err := lab.Parse("lab.toml", []byte(`
[[board]]
name = "rpi-01"
device_type = "rpi4"
backend = "hardware"
[board.console]
kind = "serial"
device = "/dev/ttyUSB0"
[board.power]
kind = "pdudaemon"
url = "http://127.0.0.1:16421"
hostname = "pdu-1"
port = 3
state = ["/usr/local/bin/outlet-state", "3"]
[board.boot]
method = "u-boot"
interrupt = "Hit any key to stop autoboot"
commands = ["setenv serverip {server_ip}", "tftpboot {kernel_addr} {kernel}", "booti {kernel_addr}"]

[[board]]
name = "bbb-02"
device_type = "bbb"
backend = "hardware"
[board.console]
kind = "tcp"
address = "127.0.0.1:4001"
[board.power]
kind = "command"
on = ["pdu", "on", "2"]
off = ["pdu", "off", "2"]
state = ["pdu", "state", "2"]
`))
	require.NoError(t, err)
	hw := l.Boards[0].Hardware
	require.NotNil(t, hw)
	assert.Equal(t, lab.Console{Kind: "serial", Device: "/dev/ttyUSB0", Baud: 115200, Parity: "none", StopBits: 1, Flow: "none"}, hw.Console)
	assert.Equal(t, "pdudaemon", hw.Power.Kind)
	assert.Equal(t, 3, hw.Power.Port)
	assert.Equal(t, []string{"/usr/local/bin/outlet-state", "3"}, hw.Power.State)
	assert.Equal(t, "u-boot", hw.Boot.Method)
	assert.Len(t, hw.Boot.Commands, 3)
	hw = l.Boards[1].Hardware
	assert.Equal(t, lab.Console{Kind: "tcp", Address: "127.0.0.1:4001", Mode: "raw", Reconnect: 10 * time.Second}, hw.Console)
	assert.Equal(t, []string{"pdu", "on", "2"}, hw.Power.On)
	assert.Equal(t, lab.BootMethod{Method: "shell", Login: "login:", User: "root", PasswordPrompt: lab.DefaultPasswordPrompt,
		ShellPrompt: lab.DefaultShellPrompt, UBootPrompt: lab.DefaultUBootPrompt, InterruptString: "\n"}, hw.Boot)
	assert.Equal(t, 2, hw.Power.Retries)
	assert.Equal(t, 2*time.Second, hw.Power.Settle)
	assert.Zero(t, hw.Power.CycleDelay)
}

func TestHardwareBoardErrors(t *testing.T) {
	head := "[[board]]\nname = \"b\"\ndevice_type = \"x\"\nbackend = \"hardware\"\n"
	tests := []struct{ name, body, want string }{
		{"no console", "[board.power]\nkind = \"manual\"\n", `lab.toml:1: board "b": console: is required`},
		{"bad console kind", "[board.console]\nkind = \"usb\"\n[board.power]\nkind = \"manual\"\n", `lab.toml:6: board "b": console.kind: must be one of serial, tcp (got "usb")`},
		{"serial without device", "[board.console]\nkind = \"serial\"\n[board.power]\nkind = \"manual\"\n", `board "b": console.device: is required`},
		{"tcp with baud", "[board.console]\nkind = \"tcp\"\naddress = \"h:1\"\nbaud = 9600\n[board.power]\nkind = \"manual\"\n", `lab.toml:8: board "b": console.baud: is for kind = "serial"`},
		{"command without state", "[board.console]\nkind = \"tcp\"\naddress = \"h:1\"\n[board.power]\nkind = \"command\"\non = [\"a\"]\noff = [\"b\"]\n", `board "b": power.state: is required`},
		{"unknown power key", "[board.console]\nkind = \"tcp\"\naddress = \"h:1\"\n[board.power]\nkind = \"manual\"\nurl = \"x\"\n", `lab.toml:10: board "b": power: unknown key "url"`},
		{"u-boot without commands", "[board.console]\nkind = \"tcp\"\naddress = \"h:1\"\n[board.power]\nkind = \"manual\"\n[board.boot]\nmethod = \"u-boot\"\ninterrupt = \"Hit\"\n", `board "b": boot.commands: is required`},
		{"console on a sim board", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := head + tc.body
			want := tc.want
			if tc.name == "console on a sim board" {
				body = "[[board]]\nname = \"b\"\ndevice_type = \"x\"\n[board.console]\nkind = \"tcp\"\n"
				want = `lab.toml:4: board "b": console: is for backend = "hardware"`
			}
			_, err := lab.Parse("lab.toml", []byte(body))
			require.Error(t, err)
			assert.Contains(t, err.Error(), want)
		})
	}
}

func TestHardwareDeploy(t *testing.T) {
	head := "[[board]]\nname = \"b\"\ndevice_type = \"x\"\nbackend = \"hardware\"\n[board.console]\nkind = \"tcp\"\naddress = \"h:1\"\n[board.power]\nkind = \"manual\"\n"
	l, err := lab.Parse("lab.toml", []byte(head+"[board.deploy]\nmethod = \"flasher\"\ncommand = [\"flash\", \"{image}\"]\ntimeout = \"2m\"\n"))
	require.NoError(t, err)
	assert.Equal(t, lab.Deploy{Method: "flasher", Command: []string{"flash", "{image}"}, Timeout: 2 * time.Minute}, l.Boards[0].Hardware.Deploy)
	l, err = lab.Parse("lab.toml", []byte(head))
	require.NoError(t, err)
	assert.Equal(t, "none", l.Boards[0].Hardware.Deploy.Method)
	_, err = lab.Parse("lab.toml", []byte(head+"[board.deploy]\nmethod = \"flasher\"\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `board "b": deploy.command: is required`)
	_, err = lab.Parse("lab.toml", []byte(head+"[board.deploy]\nmethod = \"ftp\"\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `lab.toml:11: board "b": deploy.method: must be one of none, flasher, tftp (got "ftp")`)
	l, err = lab.Parse("lab.toml", []byte("[tftp]\naddress = \"127.0.0.1:6969\"\nserver_ip = \"127.0.0.1:6969\"\n"+head+"[board.deploy]\nmethod = \"tftp\"\n"))
	require.NoError(t, err)
	assert.Equal(t, lab.TFTP{Address: "127.0.0.1:6969", ServerIP: "127.0.0.1:6969"}, l.TFTP)
	_, err = lab.Parse("lab.toml", []byte("[tftp]\naddress = \"nowhere\"\n"+head))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "lab.toml:2: tftp.address: want host:port")
}

// TestExampleLabs: the documented example labs parse.
func TestExampleLabs(t *testing.T) {
	files, err := filepath.Glob("../examples/labs/*.toml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		_, err := lab.Load(f)
		assert.NoError(t, err, f)
	}
}

// TestHardwareSSH: [board.ssh] is how guests log in to a hardware board:
// address (port 22 unless given), user (root), the lab's key and the
// board's host key (relative to the lab file).
func TestHardwareSSH(t *testing.T) {
	head := "[[board]]\nname = \"b\"\ndevice_type = \"x\"\nbackend = \"hardware\"\n[board.console]\nkind = \"tcp\"\naddress = \"h:1\"\n[board.power]\nkind = \"manual\"\n"
	l, err := lab.Parse("/etc/lab/lab.toml", []byte(head+"[board.ssh]\naddress = \"10.0.0.5\"\nkey = \"keys/id\"\nhost_key = \"/keys/b.pub\"\n"))
	require.NoError(t, err)
	assert.Equal(t, &lab.SSH{Address: "10.0.0.5:22", User: "root", Key: "/etc/lab/keys/id", HostKey: "/keys/b.pub"}, l.Boards[0].Hardware.SSH)
	l, err = lab.Parse("lab.toml", []byte(head))
	require.NoError(t, err)
	assert.Nil(t, l.Boards[0].Hardware.SSH)
	_, err = lab.Parse("lab.toml", []byte(head+"[board.ssh]\naddress = \"10.0.0.5:2222\"\nuser = \"lava\"\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `board "b": ssh.key: is required`)
	assert.Contains(t, err.Error(), `board "b": ssh.host_key: is required`)
	_, err = lab.Parse("lab.toml", []byte("[[board]]\nname = \"b\"\ndevice_type = \"x\"\n[board.ssh]\naddress = \"h\"\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `board "b": ssh: is for backend = "hardware"`)
}
