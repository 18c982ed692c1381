package lab

import (
	"regexp"
	"strings"
	"time"

	"github.com/troupe-lab/troupe/jobs/tomlfile"
)

// Hardware is how troupe reaches a real board (backend = "hardware").
type Hardware struct {
	Console Console
	Power   Power
	Boot    BootMethod
	Deploy  Deploy
	// SSH is how guests (jobs.Role.Host, LAVA's ssh guests) log in to the
	// board; nil: the board hosts no guests.
	SSH *SSH
}

// SSH is how troupe logs in to a board over ssh for a guest's session:
// only at Address (a job's message naming another address is refused),
// as User with the lab's private key, checking the board's host key.
type SSH struct {
	Address string // host:port (port 22 if left out)
	User    string // default "root"
	Key     string // the lab's private key file (relative to the lab file)
	HostKey string // the board's public host key file, authorized_keys form (relative to the lab file)
}

// Deploy is how software gets onto a real board.
type Deploy struct {
	Method  string        // "none" (default), "flasher" or "tftp" (served by the lab's TFTP server)
	Command []string      // flasher: argv templates with {image} and {board}
	Timeout time.Duration // flasher: default 10m
}

// Console is a real board's console: a serial device or a TCP port
// (ser2net: raw, telnet, or telnet with RFC 2217).
type Console struct {
	Kind    string // "serial" or "tcp"
	Device  string // serial
	Address string // tcp: host:port
	// Mode is how the TCP port speaks: "raw" (default), "telnet", or
	// "rfc2217" (telnet that sets the remote serial line: baud, parity,
	// stop bits, flow control).
	Mode string
	// Reconnect is how long a TCP console may stay away before it is lost
	// (default 10s).
	Reconnect time.Duration
	// The serial line (serial, or tcp in mode "rfc2217").
	Baud     int    // default 115200
	Parity   string // "none" (default), "odd", "even", "mark", "space"
	StopBits int    // 1 (default) or 2
	Flow     string // flow control: "none" (default), "rtscts", "xonxoff"
}

// Power is a real board's power switch.
type Power struct {
	Kind string // "pdudaemon", "command", "snmp", "manual" or "sim" (a troupe simboard's power socket)
	// CycleDelay is the least time the board stays off between off and on
	// (default 0).
	CycleDelay time.Duration
	// Retries is how often an on or off the switch answered OK is sent
	// again when reading the outlet back shows it did not switch (default
	// 2); Settle how long the read-back waits for it (default 2s).
	Retries int
	Settle  time.Duration
	// sim
	Socket string
	// pdudaemon
	URL, Hostname string
	Port          int
	// command: argv lists; State prints on/off. pdudaemon: State reads the
	// outlet back, as pdudaemon cannot.
	On, Off, State []string
	// snmp
	Target, Community, OID string
	OnValue, OffValue      int
}

// BootMethod is how a real board is brought to a shell.
type BootMethod struct {
	Method    string   // "shell" (already running a getty: power cycle and log in) or "u-boot"
	Interrupt string   // u-boot: the autoboot prompt to interrupt (regexp)
	Commands  []string // u-boot: command templates ({server_ip}, {kernel}, ...)
	// CommandSets are further u-boot command templates by name (LAVA's
	// device dictionary's boot commands: nfs, ramdisk, tftp, ...); a job's
	// boot action picks one by name, else Commands are sent.
	CommandSets map[string][]string
	// Vars are the board's own placeholder values (kernel_addr, dtb_addr
	// ...); a tftp deploy adds server_ip, kernel and image.
	Vars  map[string]string
	Login string // regexp of the login prompt (default "login:")
	User  string // typed at the login prompt (default "root")
	// Password is typed at PasswordPrompt (a regexp, default
	// "[Pp]assword:") after the user; "" (default): no password asked.
	Password, PasswordPrompt string
	// ShellPrompt is the regexp of the shell prompt after login (default
	// "[#$]\s*$").
	ShellPrompt string
	// UBootPrompt is the regexp of u-boot's prompt (default
	// "(=>|U-Boot>) ?$"); InterruptString is sent to stop its autoboot
	// (default "\n").
	UBootPrompt, InterruptString string
}

// Defaults of the hardware settings (those of package boot and of the
// hardware consoles and power drivers).
const (
	DefaultBaud           = 115200
	DefaultReconnect      = 10 * time.Second
	DefaultPowerRetries   = 2
	DefaultPowerSettle    = 2 * time.Second
	DefaultShellPrompt    = `[#$]\s*$`
	DefaultUBootPrompt    = `(=>|U-Boot>) ?$`
	DefaultInterrupt      = "\n"
	DefaultPasswordPrompt = `[Pp]assword:\s*$`
)

// HardwareBackend is the backend of real boards.
const HardwareBackend = "hardware"

var (
	consoleKinds = []string{"serial", "tcp"}
	consoleModes = []string{"raw", "telnet", "rfc2217"}
	parities     = []string{"none", "odd", "even", "mark", "space"}
	flows        = []string{"none", "rtscts", "xonxoff"}
	powerKinds   = []string{"pdudaemon", "command", "snmp", "manual", "sim"}
	bootMethods  = []string{"shell", "u-boot"}
	deployKinds  = []string{"none", "flasher", "tftp"}
)

// commandSetName is the form of the names of BootMethod.CommandSets.
var commandSetName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// parseHardware reads the [board.console], [board.power] and [board.boot]
// tables of a hardware board.
func parseHardware(t tomlfile.Table) *Hardware {
	hw := &Hardware{
		Boot: BootMethod{Method: "shell", Login: "login:", User: "root", PasswordPrompt: DefaultPasswordPrompt,
			ShellPrompt: DefaultShellPrompt, UBootPrompt: DefaultUBootPrompt, InterruptString: DefaultInterrupt},
		Power:  Power{Retries: DefaultPowerRetries, Settle: DefaultPowerSettle},
		Deploy: Deploy{Method: "none"},
	}
	t.Require("console", "power")
	if c, ok := t.Table("console"); ok {
		parseConsole(c, &hw.Console)
	}
	if p, ok := t.Table("power"); ok {
		parsePowerTiming(p, &hw.Power)
		p.Require("kind")
		hw.Power.Kind = p.OneOf("kind", powerKinds...)
		switch hw.Power.Kind {
		case "pdudaemon":
			p.Only("kind", "url", "hostname", "port", "state", "cycle_delay", "retries", "settle")
			p.Require("url", "hostname", "port")
			hw.Power.URL, _ = p.String("url")
			hw.Power.Hostname, _ = p.String("hostname")
			if n, ok := p.Int("port"); ok {
				hw.Power.Port = int(n)
			}
			hw.Power.State, _ = p.Strings("state")
		case "command":
			p.Only("kind", "on", "off", "state", "cycle_delay", "retries", "settle")
			p.Require("on", "off", "state")
			hw.Power.On, _ = p.Strings("on")
			hw.Power.Off, _ = p.Strings("off")
			hw.Power.State, _ = p.Strings("state")
		case "snmp":
			p.Only("kind", "target", "community", "oid", "on_value", "off_value", "cycle_delay", "retries", "settle")
			p.Require("target", "oid")
			hw.Power.Target, _ = p.String("target")
			hw.Power.Community = "private"
			if s, ok := p.String("community"); ok {
				hw.Power.Community = s
			}
			hw.Power.OID, _ = p.String("oid")
			hw.Power.OnValue, hw.Power.OffValue = 1, 2
			if n, ok := p.Int("on_value"); ok {
				hw.Power.OnValue = int(n)
			}
			if n, ok := p.Int("off_value"); ok {
				hw.Power.OffValue = int(n)
			}
		case "sim":
			p.Only("kind", "socket", "cycle_delay", "retries", "settle")
			p.Require("socket")
			hw.Power.Socket, _ = p.String("socket")
		default:
			p.Only("kind", "cycle_delay", "retries", "settle")
		}
		for _, k := range []string{"on", "off", "state"} {
			if argv, ok := p.Strings(k); ok && len(argv) == 0 {
				p.Errorf(k, "must name a command")
			}
		}
	}
	if b, ok := t.Table("boot"); ok {
		b.Only("method", "interrupt", "commands", "command_sets", "login", "user", "vars",
			"password", "password_prompt", "shell_prompt", "uboot_prompt", "interrupt_string")
		if b.Has("method") {
			hw.Boot.Method = b.OneOf("method", bootMethods...)
		}
		parseLogin(b, &hw.Boot)
		if hw.Boot.Method == "u-boot" {
			b.Require("interrupt", "commands")
			hw.Boot.Interrupt, _ = b.String("interrupt")
			if _, err := regexp.Compile(hw.Boot.Interrupt); err != nil {
				b.Errorf("interrupt", "invalid regexp: %v", err)
			}
			hw.Boot.Commands, _ = b.Strings("commands")
			if cs, ok := b.Table("command_sets"); ok {
				hw.Boot.CommandSets = map[string][]string{}
				for _, k := range cs.Keys() {
					if !commandSetName.MatchString(k) {
						cs.Errorf(k, "a command set's name is letters, digits, '_' and '-'")
						continue
					}
					if cmds, ok := cs.Strings(k); ok {
						if len(cmds) == 0 {
							cs.Errorf(k, "must hold at least one command")
						}
						hw.Boot.CommandSets[k] = cmds
					}
				}
			}
			if v, ok := b.Table("vars"); ok {
				hw.Boot.Vars = map[string]string{}
				for _, k := range v.Keys() {
					hw.Boot.Vars[k], _ = v.String(k)
				}
			}
			if s, ok := regexpKey(b, "uboot_prompt"); ok {
				hw.Boot.UBootPrompt = s
			}
			if s, ok := b.String("interrupt_string"); ok {
				if s == "" {
					b.Errorf("interrupt_string", "must not be empty")
				}
				hw.Boot.InterruptString = s
			}
		} else {
			for _, k := range []string{"interrupt", "commands", "command_sets", "vars", "uboot_prompt", "interrupt_string"} {
				if b.Has(k) {
					b.Errorf(k, "is for method = \"u-boot\"")
				}
			}
		}
	}
	if st, ok := t.Table("ssh"); ok {
		st.Only("address", "user", "key", "host_key")
		st.Require("address", "key", "host_key")
		sh := &SSH{User: "root"}
		for _, f := range []struct {
			k   string
			dst *string
		}{{"address", &sh.Address}, {"user", &sh.User}, {"key", &sh.Key}, {"host_key", &sh.HostKey}} {
			if s, ok := st.String(f.k); ok {
				if s == "" {
					st.Errorf(f.k, "must not be empty")
				}
				*f.dst = s
			}
		}
		if sh.Address != "" && !strings.Contains(sh.Address, ":") {
			sh.Address += ":22"
		}
		hw.SSH = sh
	}
	if d, ok := t.Table("deploy"); ok {
		d.Only("method", "command", "timeout")
		if d.Has("method") {
			hw.Deploy.Method = d.OneOf("method", deployKinds...)
		}
		if hw.Deploy.Method == "flasher" {
			d.Require("command")
			hw.Deploy.Command, _ = d.Strings("command")
			hw.Deploy.Timeout = 10 * time.Minute
			if v, ok := d.Duration("timeout"); ok {
				hw.Deploy.Timeout = v
			}
		} else {
			for _, k := range []string{"command", "timeout"} {
				if d.Has(k) {
					d.Errorf(k, "is for method = \"flasher\"")
				}
			}
		}
	}
	return hw
}

// parseConsole reads [board.console].
func parseConsole(c tomlfile.Table, con *Console) {
	c.Only("kind", "device", "baud", "address", "mode", "reconnect", "parity", "stop_bits", "flow_control")
	c.Require("kind")
	con.Kind = c.OneOf("kind", consoleKinds...)
	line := false // the serial line keys apply
	switch con.Kind {
	case "serial":
		c.Require("device")
		con.Device, _ = c.String("device")
		line = true
		for _, k := range []string{"address", "mode", "reconnect"} {
			if c.Has(k) {
				c.Errorf(k, "is for kind = \"tcp\"")
			}
		}
	case "tcp":
		c.Require("address")
		con.Address, _ = c.String("address")
		con.Mode, con.Reconnect = "raw", DefaultReconnect
		if c.Has("mode") {
			con.Mode = c.OneOf("mode", consoleModes...)
		}
		if d, ok := c.Duration("reconnect"); ok {
			if d <= 0 {
				c.Errorf("reconnect", "must be > 0 (got %q)", c.M["reconnect"])
			}
			con.Reconnect = d
		}
		line = con.Mode == "rfc2217"
		if c.Has("device") {
			c.Errorf("device", "is for kind = \"serial\"")
		}
	}
	if !line {
		for _, k := range []string{"baud", "parity", "stop_bits", "flow_control"} {
			if c.Has(k) {
				c.Errorf(k, "is for kind = \"serial\" or mode = \"rfc2217\"")
			}
		}
		return
	}
	con.Baud, con.Parity, con.StopBits, con.Flow = DefaultBaud, "none", 1, "none"
	if n, ok := c.Int("baud"); ok {
		if n <= 0 || n > 4_000_000 {
			c.Errorf("baud", "must be > 0 and <= 4000000 (got %d)", n)
		}
		con.Baud = int(n)
	}
	if c.Has("parity") {
		con.Parity = c.OneOf("parity", parities...)
	}
	if n, ok := c.Int("stop_bits"); ok {
		if n != 1 && n != 2 {
			c.Errorf("stop_bits", "must be 1 or 2 (got %d)", n)
		}
		con.StopBits = int(n)
	}
	if c.Has("flow_control") {
		con.Flow = c.OneOf("flow_control", flows...)
	}
}

// parsePowerTiming reads the keys of [board.power] that every kind has.
func parsePowerTiming(p tomlfile.Table, pw *Power) {
	if d, ok := p.Duration("cycle_delay"); ok {
		if d < 0 || d > time.Hour {
			p.Errorf("cycle_delay", "must be >= 0 and <= 1h (got %q)", p.M["cycle_delay"])
		}
		pw.CycleDelay = d
	}
	if n, ok := p.Int("retries"); ok {
		if n < 0 || n > 100 {
			p.Errorf("retries", "must be >= 0 and <= 100 (got %d)", n)
		}
		pw.Retries = int(n)
	}
	if d, ok := p.Duration("settle"); ok {
		if d <= 0 || d > 10*time.Minute {
			p.Errorf("settle", "must be > 0 and <= 10m (got %q)", p.M["settle"])
		}
		pw.Settle = d
	}
}

// parseLogin reads the login keys of [board.boot].
func parseLogin(b tomlfile.Table, bm *BootMethod) {
	if s, ok := regexpKey(b, "login"); ok {
		bm.Login = s
	}
	if s, ok := b.String("user"); ok {
		if s == "" || strings.ContainsAny(s, "\r\n") {
			b.Errorf("user", "must be one non-empty line")
		}
		bm.User = s
	}
	if s, ok := b.String("password"); ok {
		if s == "" || strings.ContainsAny(s, "\r\n") {
			// Never quote a password in an error.
			b.Errorf("password", "must be one non-empty line")
		}
		bm.Password = s
	}
	if s, ok := regexpKey(b, "password_prompt"); ok {
		if !b.Has("password") {
			b.Errorf("password_prompt", "is for boards with a password")
		}
		bm.PasswordPrompt = s
	}
	if s, ok := regexpKey(b, "shell_prompt"); ok {
		bm.ShellPrompt = s
	}
}

// regexpKey reads the string at k, which must be a non-empty regexp.
func regexpKey(t tomlfile.Table, k string) (string, bool) {
	s, ok := t.String(k)
	if !ok {
		return "", false
	}
	if s == "" {
		t.Errorf(k, "must not be empty")
	} else if _, err := regexp.Compile(s); err != nil {
		t.Errorf(k, "invalid regexp: %v", err)
	}
	return s, true
}
