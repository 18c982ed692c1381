package console

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// Telnet commands and options (RFC 854, 856, 857, 858, 2217).
const (
	tnSE   = 240
	tnSB   = 250
	tnWILL = 251
	tnWONT = 252
	tnDO   = 253
	tnDONT = 254
	tnIAC  = 255

	optBinary  = 0
	optEcho    = 1
	optSGA     = 3
	optComPort = 44
)

// RFC 2217 COM-PORT-OPTION commands sent by the client; the server answers
// each with the same command + 100 and the value it applied.
const (
	cpSetBaud     = 1
	cpSetDataSize = 2
	cpSetParity   = 3
	cpSetStopSize = 4
	cpSetControl  = 5
	cpServerBase  = 100
)

// maxSubneg bounds a subnegotiation kept from the peer; the rest is dropped.
const maxSubneg = 64

// telnet is the client side of one telnet connection, as a console needs
// it: it strips the protocol from what the peer sends, answers option
// negotiation (binary, suppress-go-ahead and echo accepted; COM-PORT-OPTION
// too when comPort), escapes IAC in what is sent and, with comPort, sets the
// serial line of the remote port (RFC 2217) once the peer agrees.
//
// decode is called by one reader at a time; encode may run concurrently
// with it (mu guards the state both use).
type telnet struct {
	comPort bool
	line    Line

	// decoder state, reader only
	state int
	verb  byte
	sb    []byte
	cr    bool // the last data byte was CR (drop a NUL after it unless binary)

	mu         sync.Mutex
	sentDo     [256]bool
	sentWill   [256]bool
	refusedDo  [256]bool // sent DONT for an unwanted WILL
	refusedWil [256]bool // sent WONT for an unwanted DO
	binaryIn   bool      // the peer sends binary
	binaryOut  bool      // we send binary
	configured bool      // COM-PORT-OPTION settings sent
	acked      map[byte]uint32
}

const (
	tsData = iota
	tsIAC
	tsVerb
	tsSB
	tsSBIAC
)

func newTelnet(comPort bool, line Line) *telnet {
	return &telnet{comPort: comPort, line: line, acked: map[byte]uint32{}}
}

// start is what the client sends right after connecting: the options it
// wants.
func (t *telnet) start() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []byte
	for _, o := range []byte{optBinary, optSGA} {
		out = append(out, tnIAC, tnDO, o, tnIAC, tnWILL, o)
		t.sentDo[o], t.sentWill[o] = true, true
	}
	if t.comPort {
		out = append(out, tnIAC, tnWILL, optComPort)
		t.sentWill[optComPort] = true
	}
	return out
}

func (t *telnet) wantHim(o byte) bool {
	return o == optBinary || o == optSGA || o == optEcho
}

func (t *telnet) wantUs(o byte) bool {
	return o == optBinary || o == optSGA || (o == optComPort && t.comPort)
}

// decode appends the data bytes of in to dst and the answers owed to the
// peer to reply. dst may share in's backing array at the same start (data
// never outgrows its input).
func (t *telnet) decode(dst, reply, in []byte) (data, replies []byte) {
	for _, c := range in {
		switch t.state {
		case tsData:
			if c == tnIAC {
				t.state = tsIAC
				continue
			}
			if c == 0 && t.cr && !t.binaryInLocked() {
				t.cr = false
				continue
			}
			t.cr = c == '\r'
			dst = append(dst, c)
		case tsIAC:
			switch c {
			case tnIAC:
				t.cr = false
				dst = append(dst, tnIAC)
				t.state = tsData
			case tnWILL, tnWONT, tnDO, tnDONT:
				t.verb = c
				t.state = tsVerb
			case tnSB:
				t.sb = t.sb[:0]
				t.state = tsSB
			default: // NOP, GA, and the other one-byte commands
				t.state = tsData
			}
		case tsVerb:
			reply = t.negotiate(reply, t.verb, c)
			t.state = tsData
		case tsSB:
			if c == tnIAC {
				t.state = tsSBIAC
				continue
			}
			if len(t.sb) < maxSubneg {
				t.sb = append(t.sb, c)
			}
		case tsSBIAC:
			switch c {
			case tnSE:
				t.subneg(t.sb)
				t.state = tsData
			case tnIAC:
				if len(t.sb) < maxSubneg {
					t.sb = append(t.sb, tnIAC)
				}
				t.state = tsSB
			default: // a broken subnegotiation: give it up
				t.state = tsData
			}
		}
	}
	return dst, reply
}

func (t *telnet) binaryInLocked() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.binaryIn
}

// negotiate answers one option request; requests it already agreed to or
// refused are not answered again (no negotiation loops).
func (t *telnet) negotiate(reply []byte, verb, o byte) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch verb {
	case tnWILL:
		if !t.wantHim(o) {
			if !t.refusedDo[o] {
				t.refusedDo[o] = true
				reply = append(reply, tnIAC, tnDONT, o)
			}
			return reply
		}
		if !t.sentDo[o] {
			t.sentDo[o] = true
			reply = append(reply, tnIAC, tnDO, o)
		}
		if o == optBinary {
			t.binaryIn = true
		}
	case tnWONT:
		t.sentDo[o] = false
		if o == optBinary {
			t.binaryIn = false
		}
	case tnDO:
		if !t.wantUs(o) {
			if !t.refusedWil[o] {
				t.refusedWil[o] = true
				reply = append(reply, tnIAC, tnWONT, o)
			}
			return reply
		}
		if !t.sentWill[o] {
			t.sentWill[o] = true
			reply = append(reply, tnIAC, tnWILL, o)
		}
		switch o {
		case optBinary:
			t.binaryOut = true
		case optComPort:
			if !t.configured {
				t.configured = true
				reply = append(reply, t.comPortSettings()...)
			}
		}
	case tnDONT:
		t.sentWill[o] = false
		if o == optBinary {
			t.binaryOut = false
		}
	}
	return reply
}

// comPortSettings are the RFC 2217 commands that set the line.
func (t *telnet) comPortSettings() []byte {
	var out []byte
	sub := func(cmd byte, value []byte) {
		out = append(out, tnIAC, tnSB, optComPort, cmd)
		out = appendEscaped(out, value)
		out = append(out, tnIAC, tnSE)
	}
	var baud [4]byte
	binary.BigEndian.PutUint32(baud[:], uint32(t.line.Baud))
	sub(cpSetBaud, baud[:])
	sub(cpSetDataSize, []byte{8})
	sub(cpSetParity, []byte{rfc2217Parity[t.line.Parity]})
	stop := byte(1)
	if t.line.StopBits == 2 {
		stop = 2
	}
	sub(cpSetStopSize, []byte{stop})
	sub(cpSetControl, []byte{rfc2217Flow[t.line.Flow]})
	return out
}

var (
	rfc2217Parity = map[string]byte{"": 1, "none": 1, "odd": 2, "even": 3, "mark": 4, "space": 5}
	rfc2217Flow   = map[string]byte{"": 1, "none": 1, "xonxoff": 2, "rtscts": 3}
)

// subneg records the server's answer to a COM-PORT-OPTION command.
func (t *telnet) subneg(sb []byte) {
	if len(sb) < 2 || sb[0] != optComPort || sb[1] <= cpServerBase {
		return
	}
	cmd, v := sb[1]-cpServerBase, sb[2:]
	var n uint32
	switch len(v) {
	case 1:
		n = uint32(v[0])
	case 4:
		n = binary.BigEndian.Uint32(v)
	default:
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.acked[cmd] = n
}

// ackedBaud is the baud rate the server said it set (ok false: no answer yet).
func (t *telnet) ackedBaud() (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.acked[cpSetBaud]
	return int(n), ok
}

// encode appends p to dst as telnet data: IAC doubled, and a bare CR
// followed by NUL while we do not send binary.
func (t *telnet) encode(dst, p []byte) []byte {
	t.mu.Lock()
	bin := t.binaryOut
	t.mu.Unlock()
	for i, c := range p {
		dst = append(dst, c)
		switch {
		case c == tnIAC:
			dst = append(dst, tnIAC)
		case c == '\r' && !bin && (i+1 == len(p) || p[i+1] != '\n'):
			dst = append(dst, 0)
		}
	}
	return dst
}

func appendEscaped(dst, v []byte) []byte {
	for _, c := range v {
		dst = append(dst, c)
		if c == tnIAC {
			dst = append(dst, tnIAC)
		}
	}
	return dst
}

// String names the option for logs.
func (t *telnet) String() string {
	if t.comPort {
		return fmt.Sprintf("rfc2217 %s", t.line)
	}
	return "telnet"
}
