package event

import (
	"encoding/binary"
	"math/bits"
)

// PayloadChecker checks, as the bytes stream through Write, that they are
// one JSON object (what json.Valid accepts, starting with '{'), holding
// nothing but a stack of open containers: a payload is checked without
// being in memory. Write never fails; Check says whether what was written
// is a whole, valid payload. Its zero value is ready to use.
type PayloadChecker struct {
	state   checkState
	stack   []byte // '{' or '[' per open container
	key     bool   // the string being read is an object's key
	lit     string // the rest of a literal being read (true, false, null)
	hex     int    // \u hex digits still to read
	started bool   // the first value began
	notObj  bool   // ... with something other than '{'
	bad     bool
}

type checkState uint8

const (
	cValue       checkState = iota // a value is expected
	cObjKeyOrEnd                   // after '{'
	cObjKey                        // after ',' in an object
	cColon                         // after a key
	cArrValOrEnd                   // after '['
	cAfterValue                    // a value ended
	cString                        // inside a string
	cEscape                        // after '\' in a string
	cLiteral                       // inside true, false or null
	cNeg                           // after '-'
	cZero                          // a number's leading 0
	cInt                           // in a number's integer digits
	cDot                           // after the decimal point
	cFrac                          // in the fraction's digits
	cE                             // after e or E
	cESign                         // after the exponent's sign
	cExp                           // in the exponent's digits
)

// maxDepth bounds nesting, as encoding/json does.
const maxDepth = 10000

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// Write checks p; it always returns len(p), nil.
func (c *PayloadChecker) Write(p []byte) (int, error) {
	for i := 0; i < len(p) && !c.bad; i++ {
		// Fast paths for the bytes that cannot change the state (most of
		// a payload is plain string bytes, indentation and digits) and
		// for the commonest steps: a string's end, a key's start, the
		// colon after it, a string value's start and a comma.
		switch c.state {
		case cString:
			if c.hex != 0 {
				break
			}
			if i = skipPlain(p, i); i < len(p) && p[i] == '"' {
				c.state = cAfterValue
				if c.key {
					c.state = cColon
				}
				continue
			}
		case cValue, cObjKeyOrEnd, cObjKey, cColon, cArrValOrEnd, cAfterValue:
			for i < len(p) && isSpace(p[i]) {
				i++
			}
			if i == len(p) {
				break
			}
			switch b := p[i]; {
			case b == '"' && (c.state == cObjKey || c.state == cObjKeyOrEnd):
				c.key, c.state = true, cString
				continue
			case b == ':' && c.state == cColon:
				c.state = cValue
				continue
			case b == '"' && c.state == cValue && c.started:
				c.key, c.state = false, cString
				continue
			case b == ',' && c.state == cAfterValue && len(c.stack) > 0:
				c.state = cValue
				if c.stack[len(c.stack)-1] == '{' {
					c.state = cObjKey
				}
				continue
			}
		case cInt, cFrac, cExp:
			for i < len(p) && '0' <= p[i] && p[i] <= '9' {
				i++
			}
		}
		if i == len(p) {
			break
		}
		c.step(p[i])
	}
	return len(p), nil
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// skipPlain returns the index of the first byte from i on that ends or
// escapes a string or is not allowed in one ('"', '\\', a control
// character), or len(p). It tests eight bytes at a time: v has a byte
// below n when (v - n*ones) &^ v & highs is not zero (n <= 128), and a
// byte equal to b when v^(b*ones) has a zero byte. A borrow only runs
// upwards from a byte that matched, so the lowest flagged byte is the
// first that matched.
func skipPlain(p []byte, i int) int {
	for ; i+8 <= len(p); i += 8 {
		v := binary.LittleEndian.Uint64(p[i:])
		q, bs := v^('"'*ones), v^('\\'*ones)
		if m := ((v-0x20*ones)&^v | (q-ones)&^q | (bs-ones)&^bs) & highs; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for i < len(p) && p[i] != '"' && p[i] != '\\' && p[i] >= 0x20 {
		i++
	}
	return i
}

// Check returns nil if exactly one JSON object was written, else the
// DataErr CheckPayload gives.
func (c *PayloadChecker) Check() error {
	end := c.state
	if len(c.stack) == 0 && (end == cZero || end == cInt || end == cFrac || end == cExp) {
		end = cAfterValue // a number ends where the input does
	}
	if c.bad || !c.started || end != cAfterValue || len(c.stack) != 0 {
		return Errorf("entry payload is not valid JSON")
	}
	if c.notObj {
		return Errorf("entry payload is not a JSON object")
	}
	return nil
}

func (c *PayloadChecker) push(b byte) {
	if len(c.stack) >= maxDepth {
		c.bad = true
		return
	}
	c.stack = append(c.stack, b)
}

// value starts a value with byte b.
func (c *PayloadChecker) value(b byte) {
	if !c.started {
		c.started, c.notObj = true, b != '{'
	}
	switch {
	case b == '{':
		c.push('{')
		c.state = cObjKeyOrEnd
	case b == '[':
		c.push('[')
		c.state = cArrValOrEnd
	case b == '"':
		c.key, c.state = false, cString
	case b == 't':
		c.lit, c.state = "rue", cLiteral
	case b == 'f':
		c.lit, c.state = "alse", cLiteral
	case b == 'n':
		c.lit, c.state = "ull", cLiteral
	case b == '-':
		c.state = cNeg
	case b == '0':
		c.state = cZero
	case '1' <= b && b <= '9':
		c.state = cInt
	default:
		c.bad = true
	}
}

// afterValue handles b after a complete value.
func (c *PayloadChecker) afterValue(b byte) {
	c.state = cAfterValue
	if isSpace(b) {
		return
	}
	if len(c.stack) == 0 {
		c.bad = true // something after the value
		return
	}
	top := c.stack[len(c.stack)-1]
	switch {
	case b == ',' && top == '{':
		c.state = cObjKey
	case b == ',' && top == '[':
		c.state = cValue
	case b == '}' && top == '{', b == ']' && top == '[':
		c.stack = c.stack[:len(c.stack)-1]
	default:
		c.bad = true
	}
}

func (c *PayloadChecker) step(b byte) {
	switch c.state {
	case cValue:
		if !isSpace(b) {
			c.value(b)
		}
	case cObjKeyOrEnd, cObjKey:
		switch {
		case isSpace(b):
		case b == '"':
			c.key, c.state = true, cString
		case b == '}' && c.state == cObjKeyOrEnd:
			c.stack = c.stack[:len(c.stack)-1]
			c.state = cAfterValue
		default:
			c.bad = true
		}
	case cColon:
		switch {
		case isSpace(b):
		case b == ':':
			c.state = cValue
		default:
			c.bad = true
		}
	case cArrValOrEnd:
		switch {
		case isSpace(b):
		case b == ']':
			c.stack = c.stack[:len(c.stack)-1]
			c.state = cAfterValue
		default:
			c.value(b)
		}
	case cAfterValue:
		c.afterValue(b)
	case cString:
		switch {
		case c.hex > 0:
			if !isHex(b) {
				c.bad = true
			}
			c.hex--
		case b == '"':
			if c.key {
				c.state = cColon
			} else {
				c.state = cAfterValue
			}
		case b == '\\':
			c.state = cEscape
		case b < 0x20:
			c.bad = true
		}
	case cEscape:
		switch b {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		case 'u':
			c.hex = 4
		default:
			c.bad = true
		}
		c.state = cString
	case cLiteral:
		if b != c.lit[0] {
			c.bad = true
			return
		}
		if c.lit = c.lit[1:]; c.lit == "" {
			c.state = cAfterValue
		}
	case cNeg:
		switch {
		case b == '0':
			c.state = cZero
		case '1' <= b && b <= '9':
			c.state = cInt
		default:
			c.bad = true
		}
	case cZero, cInt, cFrac, cExp:
		switch {
		case '0' <= b && b <= '9' && c.state != cZero:
		case b == '.' && (c.state == cZero || c.state == cInt):
			c.state = cDot
		case (b == 'e' || b == 'E') && c.state != cExp:
			c.state = cE
		default:
			c.afterValue(b)
		}
	case cDot:
		if '0' <= b && b <= '9' {
			c.state = cFrac
		} else {
			c.bad = true
		}
	case cE:
		switch {
		case b == '+' || b == '-':
			c.state = cESign
		case '0' <= b && b <= '9':
			c.state = cExp
		default:
			c.bad = true
		}
	case cESign:
		if '0' <= b && b <= '9' {
			c.state = cExp
		} else {
			c.bad = true
		}
	}
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}
