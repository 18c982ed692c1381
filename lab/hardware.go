package lab

import (
	"regexp"
	"time"

	"github.com/troupe-lab/troupe/jobs/tomlfile"
)

// Hardware is how troupe reaches a real board (backend = "hardware").
type Hardware struct {
	Console Console
	Power   Power
	Boot    BootMethod
	Deploy  Deploy
}

// Deploy is how software gets onto a real board.
type Deploy struct {
	Method  string        // "none" (default), "flasher" or "tftp" (served by the lab's TFTP server)
	Command []string      // flasher: argv templates with {image} and {board}
	Timeout time.Duration // flasher: default 10m
}

// Console is a real board's console: a serial device or a raw TCP port
// (ser2net).
type Console struct {
	Kind    string // "serial" or "tcp"
	Device  string // serial
	Baud    int    // serial; default 115200
	Address string // tcp: host:port
}

// Power is a real board's power switch.
type Power struct {
	Kind string // "pdudaemon", "command", "snmp", "manual" or "sim" (a troupe simboard's power socket)
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
	// Vars are the board's own placeholder values (kernel_addr, dtb_addr
	// ...); a tftp deploy adds server_ip, kernel and image.
	Vars  map[string]string
	Login string // regexp of the login prompt (default "login:")
	User  string // typed at the login prompt (default "root")
}

// HardwareBackend is the backend of real boards.
const HardwareBackend = "hardware"

var (
	consoleKinds = []string{"serial", "tcp"}
	powerKinds   = []string{"pdudaemon", "command", "snmp", "manual", "sim"}
	bootMethods  = []string{"shell", "u-boot"}
	deployKinds  = []string{"none", "flasher", "tftp"}
)

// parseHardware reads the [board.console], [board.power] and [board.boot]
// tables of a hardware board.
func parseHardware(t tomlfile.Table) *Hardware {
	hw := &Hardware{Boot: BootMethod{Method: "shell", Login: "login:", User: "root"}, Deploy: Deploy{Method: "none"}}
	t.Require("console", "power")
	if c, ok := t.Table("console"); ok {
		c.Only("kind", "device", "baud", "address")
		c.Require("kind")
		hw.Console.Kind = c.OneOf("kind", consoleKinds...)
		switch hw.Console.Kind {
		case "serial":
			c.Require("device")
			hw.Console.Device, _ = c.String("device")
			hw.Console.Baud = 115200
			if n, ok := c.Int("baud"); ok {
				if n <= 0 {
					c.Errorf("baud", "must be > 0 (got %d)", n)
				}
				hw.Console.Baud = int(n)
			}
			if c.Has("address") {
				c.Errorf("address", "is for kind = \"tcp\"")
			}
		case "tcp":
			c.Require("address")
			hw.Console.Address, _ = c.String("address")
			for _, k := range []string{"device", "baud"} {
				if c.Has(k) {
					c.Errorf(k, "is for kind = \"serial\"")
				}
			}
		}
	}
	if p, ok := t.Table("power"); ok {
		p.Require("kind")
		hw.Power.Kind = p.OneOf("kind", powerKinds...)
		switch hw.Power.Kind {
		case "pdudaemon":
			p.Only("kind", "url", "hostname", "port", "state")
			p.Require("url", "hostname", "port")
			hw.Power.URL, _ = p.String("url")
			hw.Power.Hostname, _ = p.String("hostname")
			if n, ok := p.Int("port"); ok {
				hw.Power.Port = int(n)
			}
			hw.Power.State, _ = p.Strings("state")
		case "command":
			p.Only("kind", "on", "off", "state")
			p.Require("on", "off", "state")
			hw.Power.On, _ = p.Strings("on")
			hw.Power.Off, _ = p.Strings("off")
			hw.Power.State, _ = p.Strings("state")
		case "snmp":
			p.Only("kind", "target", "community", "oid", "on_value", "off_value")
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
			p.Only("kind", "socket")
			p.Require("socket")
			hw.Power.Socket, _ = p.String("socket")
		case "manual":
			p.Only("kind")
		default:
			p.Only("kind")
		}
		for _, k := range []string{"on", "off", "state"} {
			if argv, ok := p.Strings(k); ok && len(argv) == 0 {
				p.Errorf(k, "must name a command")
			}
		}
	}
	if b, ok := t.Table("boot"); ok {
		b.Only("method", "interrupt", "commands", "login", "user", "vars")
		if b.Has("method") {
			hw.Boot.Method = b.OneOf("method", bootMethods...)
		}
		if s, ok := b.String("login"); ok {
			if _, err := regexp.Compile(s); err != nil {
				b.Errorf("login", "invalid regexp: %v", err)
			}
			hw.Boot.Login = s
		}
		if s, ok := b.String("user"); ok {
			hw.Boot.User = s
		}
		if hw.Boot.Method == "u-boot" {
			b.Require("interrupt", "commands")
			hw.Boot.Interrupt, _ = b.String("interrupt")
			if _, err := regexp.Compile(hw.Boot.Interrupt); err != nil {
				b.Errorf("interrupt", "invalid regexp: %v", err)
			}
			hw.Boot.Commands, _ = b.Strings("commands")
			if v, ok := b.Table("vars"); ok {
				hw.Boot.Vars = map[string]string{}
				for _, k := range v.Keys() {
					hw.Boot.Vars[k], _ = v.String(k)
				}
			}
		} else {
			for _, k := range []string{"interrupt", "commands", "vars"} {
				if b.Has(k) {
					b.Errorf(k, "is for method = \"u-boot\"")
				}
			}
		}
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
