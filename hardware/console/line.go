package console

import (
	"fmt"
	"strings"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"
)

// Line is the setting of a serial line, 8 data bits always: the local
// device of a Serial console, or the remote port of an RFC 2217 TCP console.
type Line struct {
	Baud     int    // > 0
	Parity   string // "none" ("" too), "odd", "even", "mark" or "space"
	StopBits int    // 1 (0 too) or 2
	Flow     string // flow control: "none" ("" too), "rtscts" or "xonxoff"
}

// The values a Line accepts.
var (
	Parities     = []string{"none", "odd", "even", "mark", "space"}
	FlowControls = []string{"none", "rtscts", "xonxoff"}
)

// String is e.g. "115200 8N1" or "9600 8E2 rtscts".
func (l Line) String() string {
	p := "N"
	if l.Parity != "" {
		p = strings.ToUpper(l.Parity[:1])
	}
	s := fmt.Sprintf("%d 8%s%d", l.Baud, p, max(l.StopBits, 1))
	if l.Flow != "" && l.Flow != "none" {
		s += " " + l.Flow
	}
	return s
}

// check tells what is wrong with l, if anything.
func (l Line) check() error {
	if l.Baud <= 0 {
		return fmt.Errorf("invalid baud rate %d", l.Baud)
	}
	if _, ok := serialParity[l.Parity]; !ok {
		return fmt.Errorf("invalid parity %q (want one of %s)", l.Parity, strings.Join(Parities, ", "))
	}
	if l.StopBits < 0 || l.StopBits > 2 {
		return fmt.Errorf("invalid stop bits %d (want 1 or 2)", l.StopBits)
	}
	if _, ok := rfc2217Flow[l.Flow]; !ok {
		return fmt.Errorf("invalid flow control %q (want one of %s)", l.Flow, strings.Join(FlowControls, ", "))
	}
	return nil
}

var serialParity = map[string]serial.Parity{
	"": serial.NoParity, "none": serial.NoParity, "odd": serial.OddParity,
	"even": serial.EvenParity, "mark": serial.MarkParity, "space": serial.SpaceParity,
}

func (l Line) mode() *serial.Mode {
	stop := serial.OneStopBit
	if l.StopBits == 2 {
		stop = serial.TwoStopBits
	}
	return &serial.Mode{BaudRate: l.Baud, DataBits: 8, Parity: serialParity[l.Parity], StopBits: stop}
}

// setFlow sets the flow control of the tty at device. go.bug.st/serial has
// no flow control setting and no access to its descriptor; the terminal
// settings belong to the device, so a second descriptor sets them for the
// port too.
func setFlow(device, flow string) error {
	fd, err := unix.Open(device, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("set flow control: %w", err)
	}
	defer unix.Close(fd)
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("set flow control: %w", err)
	}
	t.Cflag &^= unix.CRTSCTS
	t.Iflag &^= unix.IXON | unix.IXOFF | unix.IXANY
	switch flow {
	case "rtscts":
		t.Cflag |= unix.CRTSCTS
	case "xonxoff":
		t.Iflag |= unix.IXON | unix.IXOFF
	}
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("set flow control: %w", err)
	}
	return nil
}
