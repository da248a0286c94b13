package event

import "encoding/binary"

// validObject reports whether b is one JSON object (RFC 8259), with
// optional white space around it: what json.Valid accepts, when the first
// non-space byte is '{'. It exists because dh-receive checks every body
// it stores verbatim, and json.Valid's byte-at-a-time state machine was
// a quarter of its CPU; this one skips through strings and numbers in
// tight loops. Like json.Valid it does not check UTF-8 (encoding/json
// reads invalid UTF-8 as U+FFFD). FuzzValidObject checks that it agrees
// with json.Valid.
func validObject(b []byte) bool {
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return false
	}
	i, ok := value(b, i)
	return ok && skipSpace(b, i) == len(b)
}

// maxDepth bounds nesting, as encoding/json does (10,000).
const maxDepth = 10000

// value scans the JSON value starting at b[i] (no leading space) and
// returns the index after it. Nesting is tracked with a stack of the open
// containers, not recursion, so no input can exhaust the goroutine stack.
func value(b []byte, i int) (int, bool) {
	var stack []byte // '{' or '[' per open container
	for {
		// A value starts at b[i].
		if i >= len(b) {
			return i, false
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if len(stack) == maxDepth {
				return i, false
			}
			stack = append(stack, c)
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // '}' is '{'+2, ']' is '['+2
				stack = stack[:len(stack)-1]
				i++
				break
			}
			if c == '{' {
				var ok bool
				if i, ok = member(b, i); !ok {
					return i, false
				}
			}
			continue
		case c == '"':
			var ok bool
			if i, ok = str(b, i); !ok {
				return i, false
			}
		case c == '-' || ('0' <= c && c <= '9'):
			var ok bool
			if i, ok = number(b, i); !ok {
				return i, false
			}
		case c == 't':
			if !lit(b, i, "true") {
				return i, false
			}
			i += 4
		case c == 'f':
			if !lit(b, i, "false") {
				return i, false
			}
			i += 5
		case c == 'n':
			if !lit(b, i, "null") {
				return i, false
			}
			i += 4
		default:
			return i, false
		}
		// A value ended at b[i]: close containers, or go to the next element.
		for {
			if len(stack) == 0 {
				return i, true
			}
			i = skipSpace(b, i)
			if i == len(b) {
				return i, false
			}
			top := stack[len(stack)-1]
			if b[i] == top+2 {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if b[i] != ',' {
				return i, false
			}
			i = skipSpace(b, i+1)
			if top == '{' {
				var ok bool
				if i, ok = member(b, i); !ok {
					return i, false
				}
			}
			break
		}
	}
}

// member scans an object member's `"name" :` and the space after it.
func member(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	i, ok := str(b, i)
	if !ok {
		return i, false
	}
	i = skipSpace(b, i)
	if i == len(b) || b[i] != ':' {
		return i, false
	}
	return skipSpace(b, i+1), true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// str scans the string starting at the quote b[i].
func str(b []byte, i int) (int, bool) {
	i++
	for i < len(b) {
		// Eight bytes at a time while none of them is a quote, a
		// backslash or a control character (the bit tricks of "Bit
		// Twiddling Hacks": a byte of x below n, a zero byte of x^c).
		for i+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[i:])
			q, bs := x^(ones*'"'), x^(ones*'\\')
			if (x-ones*0x20)&^x&highs|(q-ones)&^q&highs|(bs-ones)&^bs&highs != 0 {
				break
			}
			i += 8
		}
		for i < len(b) && plain[b[i]] {
			i++
		}
		if i == len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return i, false
		case c == '\\':
			if i+1 >= len(b) {
				return i, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return i, false
				}
				for _, h := range b[i+2 : i+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return i, false
					}
				}
				i += 6
			default:
				return i, false
			}
		default:
			i++
		}
	}
	return i, false
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plain marks the bytes that stand for themselves in a string.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// number scans -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? at b[i].
func number(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

func lit(b []byte, i int, word string) bool {
	return len(b)-i >= len(word) && string(b[i:i+len(word)]) == word
}
