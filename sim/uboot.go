package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/troupe-lab/troupe/hardware/tftp"
)

// Bootloaders (Options.Bootloader).
const (
	// BootloaderNone: u-boot's banner, then the kernel at once (nothing is
	// read from the console before the login prompt).
	BootloaderNone = ""
	// BootloaderUBoot emulates u-boot's console. After the banner it prints
	// "Hit any key to stop autoboot:  2 " and waits 2 s for a key. Without
	// one it runs bootcmd, which fails as nothing is loaded ("Wrong Image
	// Format for bootm command" / "ERROR: can't get kernel image!"), and
	// stops at the prompt "=> ". With one it shows the prompt at once.
	//
	// At the prompt it reads lines, echoing what is typed (backspace and
	// Ctrl-C work), expands $var and ${var} (not inside single quotes),
	// splits commands on ';' and runs them:
	//
	//	setenv NAME [VALUE...]     set (or, without a value, delete) a variable
	//	printenv [NAME...]         print variables
	//	echo [ARGS...]
	//	tftpboot [ADDR] FILE       also tftp: fetch FILE from $serverip
	//	                           ("host" = port 69, or "host:port") into
	//	                           memory at ADDR (hex, default $loadaddr);
	//	                           sets $filesize and $fileaddr
	//	booti|bootz|bootm [ADDR [INITRD|- [FDT]]]
	//	                           boot what was loaded at ADDR (default
	//	                           $loadaddr): the kernel log follows, with
	//	                           $bootargs (if set) as its command line
	//	boot                       run $bootcmd
	//	run VAR...                 run the commands held in variables
	//	reset                      start over from the banner
	//	help, version
	//
	// Errors print u-boot's messages: "*** ERROR: `serverip' not set",
	// "TFTP error: '<server's message>' (<code>)", "Bad Linux ARM64 Image
	// magic!", "Unknown command 'X' - try 'help'", ... and the prompt comes
	// back. Memory and variables last one power-on.
	BootloaderUBoot = "u-boot"
)

const (
	ubootPrompt    = "=> "
	ubootBootDelay = 2 // seconds of autoboot countdown
	ubootMaxLine   = 1024
	ubootMaxDepth  = 16 // nesting of run/boot
	ubootBlkSize   = 1468
	tftpTimeout    = 10 * time.Second
	ubootDRAM      = 1 << 30
)

var ubootDefaultEnv = map[string]string{
	"arch":           "arm",
	"baudrate":       "115200",
	"board":          "troupe-sim",
	"bootcmd":        "bootm ${loadaddr}",
	"bootdelay":      strconv.Itoa(ubootBootDelay),
	"ethaddr":        "02:00:00:00:00:01",
	"fdt_addr_r":     "0x83000000",
	"kernel_addr_r":  "0x80000",
	"loadaddr":       "0x80000",
	"ramdisk_addr_r": "0x84000000",
	"stderr":         "serial",
	"stdin":          "serial",
	"stdout":         "serial",
}

// errReset: the reset command; u-boot starts over.
var errReset = errors.New("reset")

// ubootEmu is one run of the emulated u-boot.
type ubootEmu struct {
	b      *Board
	ctx    context.Context
	env    map[string]string
	mem    map[uint64]int64 // load address -> size of what was loaded there
	in     []byte           // bytes read from the console, not yet used
	rbuf   []byte
	prevCR bool // the last byte used was '\r' (a following '\n' is ignored)

	cmdline string // bootargs when a boot command succeeded
}

// ubootRun emulates u-boot from its banner until a boot command succeeds;
// it returns the kernel command line. It fails when ctx is done (power off).
func (b *Board) ubootRun(ctx context.Context, step time.Duration) (string, error) {
	if err := setMode(b.pts, modeUBoot); err != nil {
		return "", err
	}
	u := &ubootEmu{b: b, ctx: ctx, rbuf: make([]byte, 256)}
	for {
		u.env = maps.Clone(ubootDefaultEnv)
		u.mem = map[uint64]int64{}
		booted, err := u.session(step)
		if errors.Is(err, errReset) {
			continue
		}
		if err != nil {
			return "", err
		}
		if booted {
			return u.cmdline, nil
		}
	}
}

// session: banner, countdown, bootcmd or the prompt, until a command boots.
func (u *ubootEmu) session(step time.Duration) (bool, error) {
	t := time.NewTimer(step)
	defer t.Stop()
	for _, l := range u.b.ubootBanner() {
		if err := u.print(l + "\r\n"); err != nil {
			return false, err
		}
		t.Reset(step)
		select {
		case <-u.ctx.Done():
			return false, u.ctx.Err()
		case <-t.C:
		}
	}
	key, err := u.countdown()
	if err != nil {
		return false, err
	}
	if !key {
		booted, err := u.run(u.env["bootcmd"], 0)
		if err != nil || booted {
			return booted, err
		}
	}
	for {
		if err := u.print(ubootPrompt); err != nil {
			return false, err
		}
		line, err := u.readLine()
		if err != nil {
			return false, err
		}
		booted, err := u.run(line, 0)
		if err != nil || booted {
			return booted, err
		}
	}
}

func (u *ubootEmu) print(s string) error {
	if _, err := u.b.pts.WriteString(s); err != nil {
		if cerr := u.ctx.Err(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("write u-boot console: %w", err)
	}
	return nil
}

func (u *ubootEmu) println(format string, a ...any) error {
	return u.print(fmt.Sprintf(format, a...) + "\r\n")
}

// setReadDeadline sets the console's read deadline unless the power is
// off: interruptible's callback sets the deadline once ctx is done, so a
// later one must not undo it.
func (u *ubootEmu) setReadDeadline(t time.Time) error {
	if err := u.b.pts.SetReadDeadline(t); err != nil {
		return err
	}
	return u.ctx.Err()
}

// fill reads at least one byte into u.in.
func (u *ubootEmu) fill() error {
	n, err := u.b.pts.Read(u.rbuf)
	u.in = append(u.in, u.rbuf[:n]...)
	if n > 0 {
		return nil
	}
	if cerr := u.ctx.Err(); cerr != nil {
		return cerr
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

func (u *ubootEmu) readByte() (byte, error) {
	for len(u.in) == 0 {
		if err := u.fill(); err != nil {
			return 0, fmt.Errorf("read u-boot console: %w", err)
		}
	}
	c := u.in[0]
	u.in = u.in[1:]
	return c, nil
}

// waitKey waits up to d for a byte and uses it up.
func (u *ubootEmu) waitKey(d time.Duration) (bool, error) {
	if len(u.in) == 0 {
		if err := u.setReadDeadline(time.Now().Add(d)); err != nil {
			return false, err
		}
		err := u.fill()
		if derr := u.setReadDeadline(time.Time{}); derr != nil {
			return false, derr
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read u-boot console: %w", err)
		}
	}
	u.prevCR = u.in[0] == '\r'
	u.in = u.in[1:]
	return true, nil
}

// countdown prints the autoboot countdown and reports whether a key
// stopped it.
func (u *ubootEmu) countdown() (bool, error) {
	if err := u.print(fmt.Sprintf("Hit any key to stop autoboot: %2d ", ubootBootDelay)); err != nil {
		return false, err
	}
	for i := ubootBootDelay; i > 0; i-- {
		key, err := u.waitKey(time.Second)
		if err != nil {
			return false, err
		}
		if key {
			return true, u.print("\b\b\b 0 \r\n")
		}
		if err := u.print(fmt.Sprintf("\b\b\b%2d ", i-1)); err != nil {
			return false, err
		}
	}
	return false, u.print("\r\n")
}

// readLine reads a command line, echoing it as u-boot does.
func (u *ubootEmu) readLine() (string, error) {
	var line []byte
	for {
		c, err := u.readByte()
		if err != nil {
			return "", err
		}
		afterCR := u.prevCR
		u.prevCR = c == '\r'
		var echo string
		switch {
		case c == '\n' && afterCR: // the '\n' of a "\r\n"
		case c == '\r' || c == '\n':
			return string(line), u.print("\r\n")
		case c == 0x03: // Ctrl-C
			return "", u.print("<INTERRUPT>\r\n")
		case c == 0x08 || c == 0x7f:
			if len(line) > 0 {
				line = line[:len(line)-1]
				echo = "\b \b"
			}
		case c == '\t' || c >= 0x20 && c != 0x7f:
			if len(line) < ubootMaxLine {
				line = append(line, c)
				echo = string(c)
			}
		}
		if echo != "" {
			if err := u.print(echo); err != nil {
				return "", err
			}
		}
	}
}

// splitCommands splits a command line on the ';' outside quotes; the
// commands are expanded one by one as they run, as hush does.
func splitCommands(line string) []string {
	var cmds []string
	var quote byte
	start := 0
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			} else if c == '\\' && quote == '"' {
				i++
			}
		case c == '\\':
			i++
		case c == '\'' || c == '"':
			quote = c
		case c == ';':
			cmds = append(cmds, line[start:i])
			start = i + 1
		}
	}
	return append(cmds, line[start:])
}

// parse splits a command line into commands (on ';') and their arguments,
// expanding variables, quotes and backslashes like u-boot's hush.
func (u *ubootEmu) parse(line string) [][]string {
	var (
		cmds  [][]string
		args  []string
		cur   strings.Builder
		inArg bool
		quote byte
	)
	endArg := func() {
		if inArg {
			args = append(args, cur.String())
		}
		cur.Reset()
		inArg = false
	}
	endCmd := func() {
		endArg()
		if len(args) > 0 {
			cmds = append(cmds, args)
		}
		args = nil
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		if quote == '\'' {
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
			continue
		}
		switch {
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inArg = true
		case c == '"':
			quote ^= '"'
			inArg = true
		case c == '\'':
			if quote == '"' {
				cur.WriteByte(c)
			} else {
				quote = '\''
			}
			inArg = true
		case c == '$':
			name, n := varName(line[i+1:])
			if n == 0 {
				cur.WriteByte(c)
				inArg = true
				break
			}
			i += n
			if v := u.env[name]; v != "" {
				cur.WriteString(v)
				inArg = true
			}
		case quote == 0 && (c == ' ' || c == '\t'):
			endArg()
		case quote == 0 && c == ';':
			endCmd()
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	endCmd()
	return cmds
}

// varName reads a variable reference after '$': "name..." or "{name}...";
// it returns the name and the bytes it spans (0: not a reference).
func varName(s string) (string, int) {
	if strings.HasPrefix(s, "{") {
		if end := strings.IndexByte(s, '}'); end > 1 {
			return s[1:end], end + 1
		}
		return "", 0
	}
	n := 0
	for n < len(s) && (s[n] == '_' || s[n] >= '0' && s[n] <= '9' || s[n] >= 'a' && s[n] <= 'z' || s[n] >= 'A' && s[n] <= 'Z') {
		n++
	}
	return s[:n], n
}

// run runs a command line; it reports whether a command booted the kernel.
func (u *ubootEmu) run(line string, depth int) (bool, error) {
	if depth > ubootMaxDepth {
		return false, u.println("## Error: too deeply nested")
	}
	for _, cmd := range splitCommands(line) {
		for _, args := range u.parse(cmd) {
			booted, err := u.exec(args, depth)
			if err != nil || booted {
				return booted, err
			}
		}
	}
	return false, nil
}

var ubootHelp = []string{
	"?         - alias for 'help'",
	"boot      - boot default, i.e., run 'bootcmd'",
	"booti     - boot Linux kernel 'Image' format from memory",
	"bootm     - boot application image from memory",
	"bootz     - boot Linux zImage image from memory",
	"echo      - echo args to console",
	"help      - print command description/usage",
	"printenv  - print environment variables",
	"reset     - Perform RESET of the CPU",
	"run       - run commands in an environment variable",
	"setenv    - set environment variables",
	"tftpboot  - boot image via network using TFTP protocol",
	"version   - print monitor, compiler and linker version",
}

func (u *ubootEmu) exec(args []string, depth int) (bool, error) {
	switch args[0] {
	case "setenv":
		if len(args) < 2 {
			return false, u.usage("setenv name value ...")
		}
		if len(args) == 2 {
			delete(u.env, args[1])
		} else {
			u.env[args[1]] = strings.Join(args[2:], " ")
		}
	case "printenv":
		names := args[1:]
		if len(names) == 0 {
			for _, k := range slices.Sorted(maps.Keys(u.env)) {
				if err := u.println("%s=%s", k, u.env[k]); err != nil {
					return false, err
				}
			}
			return false, u.println("\r\nEnvironment size: %d/8188 bytes", u.envSize())
		}
		for _, k := range names {
			var err error
			if v, ok := u.env[k]; ok {
				err = u.println("%s=%s", k, v)
			} else {
				err = u.println("## Error: \"%s\" not defined", k)
			}
			if err != nil {
				return false, err
			}
		}
	case "echo":
		return false, u.println("%s", strings.Join(args[1:], " "))
	case "help", "?":
		return false, u.print(strings.Join(ubootHelp, "\r\n") + "\r\n")
	case "version":
		return false, u.println("U-Boot 2024.01-troupe-sim (Jan 08 2024 - 12:00:00 +0000)\r\n\r\naarch64-linux-gnu-gcc 12.2.0\r\nGNU ld 2.40")
	case "reset":
		if err := u.println("resetting ..."); err != nil {
			return false, err
		}
		return false, errReset
	case "run":
		if len(args) < 2 {
			return false, u.usage("run var [...]")
		}
		for _, v := range args[1:] {
			cmd, ok := u.env[v]
			if !ok {
				return false, u.println("## Error: \"%s\" not defined", v)
			}
			if booted, err := u.run(cmd, depth+1); err != nil || booted {
				return booted, err
			}
		}
	case "boot":
		return u.run(u.env["bootcmd"], depth+1)
	case "tftpboot", "tftp":
		return false, u.tftp(args)
	case "booti", "bootz", "bootm":
		return u.bootKernel(args)
	default:
		return false, u.println("Unknown command '%s' - try 'help'", args[0])
	}
	return false, nil
}

func (u *ubootEmu) envSize() int {
	n := 0
	for k, v := range u.env {
		n += len(k) + len(v) + 2
	}
	return n
}

func (u *ubootEmu) usage(s string) error {
	return u.println("Usage:\r\n%s", s)
}

// parseAddr parses a u-boot address: hex, with or without "0x".
func parseAddr(s string) (uint64, bool) {
	s = strings.ToLower(s)
	s = strings.TrimPrefix(s, "0x")
	a, err := strconv.ParseUint(s, 16, 64)
	return a, err == nil && s != ""
}

// tftpServer is the address to fetch from: serverip, with port 69 unless
// it names one.
func tftpServer(serverip string) string {
	if _, _, err := net.SplitHostPort(serverip); err == nil {
		return serverip
	}
	return net.JoinHostPort(serverip, "69")
}

// countWriter counts the bytes written to it, refusing more than limit.
type countWriter struct{ n, limit int64 }

func (w *countWriter) Write(p []byte) (int, error) {
	if w.n+int64(len(p)) > w.limit {
		return 0, errors.New("image too large for DRAM")
	}
	w.n += int64(len(p))
	return len(p), nil
}

func (u *ubootEmu) tftp(args []string) error {
	var addrS, file string
	switch len(args) {
	case 2:
		addrS, file = u.env["loadaddr"], args[1]
	case 3:
		addrS, file = args[1], args[2]
	default:
		return u.usage("tftpboot [loadAddress] [[hostIPaddr:]bootfilename]")
	}
	addr, ok := parseAddr(addrS)
	if !ok {
		return u.println("## Error: bad load address '%s'", addrS)
	}
	serverip := u.env["serverip"]
	if serverip == "" {
		return u.println("*** ERROR: `serverip' not set")
	}
	ourIP := u.env["ipaddr"]
	if ourIP == "" {
		ourIP = "127.0.0.1"
	}
	if err := u.print(fmt.Sprintf("Using sim-eth@0 device\r\nTFTP from server %s; our IP address is %s\r\n"+
		"Filename '%s'.\r\nLoad address: 0x%x\r\nLoading: ", serverip, ourIP, file, addr)); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(u.ctx, tftpTimeout)
	defer cancel()
	w := &countWriter{limit: ubootDRAM}
	start := time.Now()
	n, err := tftp.Get(ctx, tftpServer(serverip), file, w, ubootBlkSize)
	if cerr := u.ctx.Err(); cerr != nil {
		return cerr
	}
	if err != nil {
		u.b.log.Debug("u-boot: tftp failed", "file", file, "server", serverip, "err", err)
		var te *tftp.Error
		switch {
		case errors.As(err, &te):
			return u.println("*\r\nTFTP error: '%s' (%d)\r\nNot retrying...", te.Message, te.Code)
		case errors.Is(err, tftp.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
			return u.println("T T T T T \r\nRetry count exceeded\r\nTFTP error: no answer from server %s", serverip)
		default:
			return u.println("\r\nTFTP error: %v", err)
		}
	}
	// One '#' every 10 blocks, 65 a line, as u-boot prints them.
	hashes := min(max(int(n/(10*ubootBlkSize)), 1), 650)
	var sb strings.Builder
	for i := range hashes {
		if i > 0 && i%65 == 0 {
			sb.WriteString("\r\n\t ")
		}
		sb.WriteByte('#')
	}
	rate := float64(n) / max(time.Since(start).Seconds(), 1e-3) / (1 << 20)
	u.mem[addr] = n
	u.env["filesize"] = strconv.FormatInt(n, 16)
	u.env["fileaddr"] = strconv.FormatUint(addr, 16)
	return u.println("%s\r\n\t %.1f MiB/s\r\ndone\r\nBytes transferred = %d (%x hex)", sb.String(), rate, n, n)
}

// loaded reports what was loaded at the address s ("addr" or "addr:size").
func (u *ubootEmu) loaded(s string) (uint64, int64, bool) {
	s, _, _ = strings.Cut(s, ":")
	a, ok := parseAddr(s)
	if !ok {
		return 0, 0, false
	}
	n, ok := u.mem[a]
	return a, n, ok
}

// bootKernel runs booti, bootz or bootm; it reports whether the kernel
// starts.
func (u *ubootEmu) bootKernel(args []string) (bool, error) {
	kind := args[0]
	addrS := u.env["loadaddr"]
	if len(args) > 1 {
		addrS = args[1]
	}
	addr, size, ok := u.loaded(addrS)
	if !ok {
		switch kind {
		case "booti":
			return false, u.println("Bad Linux ARM64 Image magic!")
		case "bootz":
			return false, u.println("Bad Linux ARM zImage magic!")
		default:
			return false, u.println("Wrong Image Format for bootm command\r\nERROR: can't get kernel image!")
		}
	}
	var out []string
	switch kind {
	case "booti":
		out = append(out, fmt.Sprintf("Moving Image from 0x%x to 0x200000, end=%x", addr, 0x200000+size))
	case "bootz":
		out = append(out, fmt.Sprintf("Kernel image @ 0x%x [ 0x000000 - 0x%x ]", addr, size))
	default:
		out = append(out, fmt.Sprintf("## Booting kernel from Legacy Image at %08x ...", addr),
			"   Image Name:   Linux-6.1.0-troupe-sim",
			fmt.Sprintf("   Data Size:    %d Bytes", size),
			"   Verifying Checksum ... OK")
	}
	if len(args) > 2 && args[2] != "-" {
		a, n, ok := u.loaded(args[2])
		if !ok {
			return false, u.println("Wrong Ramdisk Image Format\r\nRamdisk image is corrupt or invalid")
		}
		out = append(out, fmt.Sprintf("## Loading init Ramdisk from 0x%x (%d bytes) ... OK", a, n))
	}
	if len(args) > 3 {
		a, _, ok := u.loaded(args[3])
		if !ok {
			return false, u.println("ERROR: Did not find a cmdline Flattened Device Tree\r\nCould not find a valid device tree")
		}
		out = append(out, fmt.Sprintf("## Flattened Device Tree blob at %08x", a),
			fmt.Sprintf("   Booting using the fdt blob at 0x%x", a),
			"   Loading Device Tree to 000000003df2a000, end 000000003df3ffff ... OK")
	}
	u.b.log.Debug("u-boot: booting", "command", strings.Join(args, " "), "size", size)
	u.cmdline = defaultCmdline
	if v := u.env["bootargs"]; v != "" {
		u.cmdline = v
	}
	return true, u.print(strings.Join(out, "\r\n") + "\r\n\r\n")
}
