package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupe-lab/troupe/report"
)

// simboard starts `troupe simboard` with a console on a pty (pty != "") or
// on a TCP port, and returns the console's address or device and the power
// control socket.
func simboard(t *testing.T, name string, onPty bool, extra ...string) (where, control string) {
	t.Helper()
	dir := t.TempDir()
	control = filepath.Join(dir, "power.sock")
	args := []string{"simboard", "--name", name, "--control", control, "--dir", filepath.Join(dir, "root")}
	args = append(args, extra...)
	if onPty {
		where = filepath.Join(dir, "ttyS0")
		args = append(args, "--pty", where)
	} else {
		args = append(args, "--tcp", "127.0.0.1:0")
	}
	cmd := exec.Command(troupeBin, args...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	if !onPty {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		require.NoError(t, err)
		where = strings.TrimSpace(strings.TrimPrefix(line, "console on "))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, errSock := os.Stat(control)
		_, errPty := os.Stat(where)
		if errSock == nil && (!onPty || errPty == nil) {
			break
		}
		require.True(t, time.Now().Before(deadline), "simboard %s did not start", name)
		time.Sleep(20 * time.Millisecond)
	}
	return where, control
}

// tftpBootCommands fetch a kernel, a ramdisk and a dtb over TFTP and boot
// them (u-boot's bootz), as a lab entry gives them.
const tftpBootCommands = `["setenv serverip {server_ip}", "tftp 0x82000000 {kernel}", "tftp 0x88080000 {ramdisk}", "tftp 0x88000000 {dtb}", "bootz 0x82000000 0x88080000 0x88000000"]`

// ubootLab writes, in dir, a lab file (retries = 0) with a TFTP server
// and one u-boot board called name on the simboard at addr/sock: its
// console on TCP, its power the simboard's, deployed over TFTP and booted
// with commands (a TOML array) after the autoboot prompt interrupt.
func ubootLab(t *testing.T, dir, name, deviceType, addr, sock, interrupt, commands string) string {
	t.Helper()
	return writeFile(t, dir, "lab.toml", `retries = 0
[tftp]
address = "127.0.0.1:0"
`+simboardEntry(name, deviceType, addr, sock)+fmt.Sprintf(`[board.boot]
method = "u-boot"
interrupt = %q
commands = %s
[board.deploy]
method = "tftp"
`, interrupt, commands))
}

// simboardEntry is the lab entry of a hardware board called name on the
// simboard at addr/sock: its console on TCP, its power the simboard's.
func simboardEntry(name, deviceType, addr, sock string) string {
	return fmt.Sprintf(`[[board]]
name = %q
device_type = %q
backend = "hardware"
[board.console]
kind = "tcp"
address = %q
[board.power]
kind = "sim"
socket = %q
`, name, deviceType, addr, sock)
}

// TestHardwareBackends runs a MultiNode job on real-board backends: one
// board on a serial console (a pty, through go.bug.st/serial), one on a raw
// TCP console, both powered through the command driver with read-back.
// The boards are `troupe simboard` processes: no mock of the code under test.
func TestHardwareBackends(t *testing.T) {
	t.Parallel()
	tty, ttyPower := simboard(t, "hw-serial", true)
	addr, tcpPower := simboard(t, "hw-tcp", false)
	power := func(sock string) string {
		q := func(op string) string {
			return fmt.Sprintf("[%q, \"simboard\", \"power\", %q, %q]", troupeBin, sock, op)
		}
		return fmt.Sprintf("[board.power]\nkind = \"command\"\non = %s\noff = %s\nstate = %s\n", q("on"), q("off"), q("status"))
	}
	dir := t.TempDir()
	labFile := writeFile(t, dir, "lab.toml", fmt.Sprintf(`
[[board]]
name = "hw-serial"
device_type = "rpi4"
backend = "hardware"
[board.console]
kind = "serial"
device = %q
baud = 115200
[board.power]
kind = "sim"
socket = %q
[[board]]
name = "hw-tcp"
device_type = "bbb"
backend = "hardware"
[board.console]
kind = "tcp"
address = %q
%s`, tty, ttyPower, addr, power(tcpPower)))
	job := writeFile(t, dir, "job.toml", `name = "on-hardware"
timeout = "1m"
[multinode]
timeout = "20s"
[roles.server]
device_type = "rpi4"
[roles.client]
device_type = "bbb"
[[action]]
type = "boot"
timeout = "20s"
[[action]]
type = "test"
name = "talk"
run = '''
echo "$TROUPE_NODE on $TROUPE_BOARD"
if [ "$TROUPE_ROLE" = server ]; then troupe-send hello from=$TROUPE_BOARD; fi
if [ "$TROUPE_ROLE" = client ]; then troupe-test-case got-hello --shell troupe-wait hello; fi
troupe-test-case synced --shell troupe-sync done
'''`)
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT", job)
	require.Equal(t, 0, res.code, "stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	r := readResults(t, res.out)
	assert.Equal(t, report.StatusComplete, r.Job.Status)
	assert.Equal(t, "hw-serial", nodeByName(t, r, "server-0").Board)
	assert.Equal(t, "hw-tcp", nodeByName(t, r, "client-0").Board)
	got := map[string]string{}
	for _, c := range r.Tests {
		got[c.Node+"/"+c.Name] = c.Result
	}
	assert.Equal(t, "pass", got["client-0/got-hello"], "%v", got)
	assert.Equal(t, "pass", got["server-0/synced"], "%v", got)
	assert.Contains(t, readLog(t, res.out, "server-0"), "hw-serial login:")
	assert.Contains(t, readLog(t, res.out, "client-0"), "\nfrom=hw-serial\n")

	// Every board was powered off at the end.
	for _, sock := range []string{ttyPower, tcpPower} {
		st := troupe(t, "simboard", "power", sock, "status")
		assert.Equal(t, "off\n", st.stdout, st.stderr)
	}
}

// TestHardwareConsoleMissing: a console device that does not exist is an
// infrastructure error naming the board and the device.
func TestHardwareConsoleMissing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	labFile := writeFile(t, dir, "lab.toml", `
[[board]]
name = "ghost"
device_type = "rpi4"
backend = "hardware"
[board.console]
kind = "serial"
device = "/dev/does-not-exist"
[board.power]
kind = "command"
on = ["true"]
off = ["true"]
state = ["echo", "on"]
`)
	job := writeFile(t, dir, "job.toml", "name = \"x\"\n[roles.a]\ndevice_type = \"rpi4\"\n[[action]]\ntype = \"boot\"\n")
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT", job)
	assert.Equal(t, 2, res.code, res.stdout+res.stderr)
	r := readResults(t, res.out)
	assert.Equal(t, report.Infrastructure, r.Job.Class)
	assert.Contains(t, r.Job.Error, "console of ghost: open /dev/does-not-exist")
}

// TestHardwareFlasherFails: a flasher that exits non-zero is an
// infrastructure error naming the board, with the flasher's output.
func TestHardwareFlasherFails(t *testing.T) {
	t.Parallel()
	addr, sock := simboard(t, "hw-flash", false)
	dir := t.TempDir()
	writeFile(t, dir, "rootfs.img", "not really an image")
	labFile := writeFile(t, dir, "lab.toml", simboardEntry("hw-flash", "bbb", addr, sock)+`[board.deploy]
method = "flasher"
command = ["/bin/sh", "-c", "echo 'flashing {board}'; echo 'mmc write failed' >&2; exit 4"]
`)
	job := writeFile(t, dir, "job.toml", "name = \"flash\"\n[roles.a]\ndevice_type = \"bbb\"\n[[action]]\ntype = \"deploy\"\nimage = \"rootfs.img\"\n[[action]]\ntype = \"boot\"\n")
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT", job)
	assert.Equal(t, 2, res.code, res.stdout+res.stderr)
	r := readResults(t, res.out)
	assert.Equal(t, report.Infrastructure, r.Job.Class)
	assert.Contains(t, r.Job.Error, "flash hw-flash: /bin/sh: exit status 4: flashing hw-flash | mmc write failed")
}

// TestHardwareUBootFailures: a TFTP file that is missing is an
// infrastructure error naming the board and the cause; a u-boot prompt
// that never appears within the job's own (8 s) boot timeout names the
// cause too, but is the job's error: only the lab's own boot limit makes
// it the board's (issue 12 item 9).
func TestHardwareUBootFailures(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, interrupt, commands, want, class string }{
		{"tftp file missing", "Hit any key to stop autoboot", `["setenv serverip {server_ip}", "tftpboot 0x80000 no-such-Image", "booti 0x80000"]`,
			`u-boot: "tftpboot 0x80000 no-such-Image": TFTP error: 'file not found'`, report.Infrastructure},
		{"no u-boot prompt", "Press SPACE to abort autoboot", `["booti 0x80000"]`, "u-boot prompt never appeared", report.JobError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, sock := simboard(t, "hw-uboot", false, "--bootloader", "u-boot")
			dir := t.TempDir()
			writeFile(t, dir, "Image", "kernel")
			labFile := ubootLab(t, dir, "hw-uboot", "bbb", addr, sock, tc.interrupt, tc.commands)
			job := writeFile(t, dir, "job.toml", "name = \"ub\"\n[roles.a]\ndevice_type = \"bbb\"\n[[action]]\ntype = \"deploy\"\nimage = \"Image\"\n[[action]]\ntype = \"boot\"\ntimeout = \"8s\"\n")
			res := troupe(t, "run", "--lab", labFile, "--out", "OUT", job)
			assert.Equal(t, 2, res.code, res.stdout+res.stderr)
			r := readResults(t, res.out)
			assert.Equal(t, tc.class, r.Job.Class)
			assert.Contains(t, r.Job.Error, "board hw-uboot")
			assert.Contains(t, r.Job.Error, tc.want)
		})
	}
}

// TestHardwareUBootTFTPImages: a deploy of kernel, initrd and dtb images
// to a u-boot board stages each for TFTP; the board's commands fetch them
// through {kernel}, {ramdisk} and {dtb} (LAVA's deploy to: tftp).
func TestHardwareUBootTFTPImages(t *testing.T) {
	t.Parallel()
	addr, sock := simboard(t, "hw-tftp", false, "--bootloader", "u-boot")
	dir := t.TempDir()
	writeFile(t, dir, "zImage", "kernel")
	writeFile(t, dir, "initrd.img", "ramdisk")
	writeFile(t, dir, "board.dtb", "device tree")
	labFile := ubootLab(t, dir, "hw-tftp", "bbb", addr, sock, "Hit any key to stop autoboot", tftpBootCommands)
	job := writeFile(t, dir, "job.toml", `name = "tftp-images"
[roles.a]
device_type = "bbb"
[[action]]
type = "deploy"
images = {kernel = "zImage", initrd = "initrd.img", dtb = "board.dtb"}
[[action]]
type = "boot"
timeout = "30s"
[[action]]
type = "test"
name = "up"
run = "lava-test-case booted --result pass"
`)
	res := troupe(t, "run", "--lab", labFile, "--out", "OUT", job)
	require.Equal(t, 0, res.code, res.stdout+res.stderr)
	log := readLog(t, res.out, "a-0")
	for _, f := range []string{"hw-tftp/zImage", "hw-tftp/initrd.img", "hw-tftp/board.dtb"} {
		assert.Contains(t, log, f, "fetched over TFTP")
	}
	assert.Contains(t, caseResults(readResults(t, res.out)), "up/booted=pass")
}

// caseResults lists the test cases of r as suite/name=result.
func caseResults(r *report.Results) []string {
	var out []string
	for _, c := range r.Tests {
		out = append(out, fmt.Sprintf("%s/%s=%s", c.Suite, c.Name, c.Result))
	}
	return out
}
