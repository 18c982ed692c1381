package console

// stripper removes ANSI escape sequences and carriage returns from a byte
// stream. It keeps state between calls so sequences split across reads are
// handled. The output never contains ESC (0x1b) or '\r'.
type stripper struct {
	state  int
	strLen int // bytes swallowed inside the current string sequence (OSC, DCS...)
}

const (
	stNormal   = iota
	stEsc      // after ESC
	stEscInter // ESC followed by intermediate bytes (0x20-0x2f), e.g. ESC ( B
	stCSI      // ESC [ ... final byte
	stString   // OSC/DCS/SOS/PM/APC body, ends with BEL or ESC \
	stStringEsc
)

// maxStringSeq bounds how much output an unterminated OSC/DCS may swallow.
const maxStringSeq = 4096

const esc = 0x1b

// strip appends the cleaned form of p to dst and returns it.
func (s *stripper) strip(dst, p []byte) []byte {
	for _, b := range p {
		switch s.state {
		case stNormal:
			switch b {
			case esc:
				s.state = stEsc
			case '\r':
			default:
				dst = append(dst, b)
			}
		case stEsc:
			switch {
			case b == esc:
				// ESC ESC: restart.
			case b == '[':
				s.state = stCSI
			case b == ']' || b == 'P' || b == 'X' || b == '^' || b == '_':
				s.state, s.strLen = stString, 0
			case b >= 0x20 && b <= 0x2f:
				s.state = stEscInter
			default:
				// Simple "ESC x" (or ESC followed by junk): drop both.
				s.state = stNormal
			}
		case stEscInter:
			switch {
			case b == esc:
				s.state = stEsc
			case b >= 0x20 && b <= 0x2f:
			default:
				s.state = stNormal
			}
		case stCSI:
			switch {
			case b == esc:
				s.state = stEsc
			case b >= 0x20 && b <= 0x3f:
				// parameter / intermediate bytes
			case b >= 0x40 && b <= 0x7e:
				s.state = stNormal
			default:
				// Malformed sequence: abandon it, keep the byte.
				s.state = stNormal
				if b != '\r' {
					dst = append(dst, b)
				}
			}
		case stString:
			s.strLen++
			switch {
			case b == 0x07:
				s.state = stNormal
			case b == esc:
				s.state = stStringEsc
			case b == 0x18 || b == 0x1a || s.strLen > maxStringSeq:
				// CAN/SUB cancel; overlong strings are abandoned.
				s.state = stNormal
			}
		case stStringEsc:
			if b == '\\' {
				s.state = stNormal
				continue
			}
			// Not ST: the ESC starts a new sequence.
			s.state = stEsc
			dst = s.strip(dst, []byte{b})
		}
	}
	return dst
}

// StripANSI returns s without ANSI escape sequences and carriage returns.
func StripANSI(s string) string {
	var st stripper
	return string(st.strip(nil, []byte(s)))
}
