package nginx

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dh-deployer/dh-deployer/pkg/event"
)

// SiteInfo is what dh-nginx needs to know of a site file.
type SiteInfo struct {
	// Names are the server_names of every server block, in order, without
	// duplicates.
	Names []string
	// TLS reports whether the file has an ssl_certificate directive: the
	// site needs a certificate.
	TLS bool
}

// block is an open block while parsing.
type block struct {
	name  string
	line  int
	names int // server_name directives seen, for server blocks
}

// token is one word of an nginx configuration: a directive name or
// argument (quotes removed), or one of "{", "}", ";".
type token struct {
	text   string
	quoted bool // the word was quoted: never punctuation
	line   int
}

// tokenize splits an nginx configuration into tokens the way nginx's own
// parser does: "#" starts a comment to the end of the line (outside
// quotes), single and double quotes group a word, "\" keeps the next
// character from ending a word (see unescape for what the pair becomes),
// ";" and "{" end words, except a "{" right after "$" ("${name}"), and
// "{", "}", ";" are tokens of their own where a word could start ("a}b"
// is one word, as for nginx).
func tokenize(src string) ([]token, error) {
	var toks []token
	line := 1
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '{' || c == '}' || c == ';':
			toks = append(toks, token{text: string(c), line: line})
			i++
		case c == '"' || c == '\'':
			start := line
			var b strings.Builder
			i++
			closed := false
			for i < len(src) {
				ch := src[i]
				if ch == '\\' && i+1 < len(src) {
					line += unescape(&b, src[i+1])
					i += 2
					continue
				}
				if ch == c {
					closed = true
					i++
					break
				}
				if ch == '\n' {
					line++
				}
				b.WriteByte(ch)
				i++
			}
			if !closed {
				return nil, fmt.Errorf("line %d: unterminated quoted string", start)
			}
			toks = append(toks, token{text: b.String(), quoted: true, line: start})
		default:
			var b strings.Builder
			variable := false // the previous character was an unescaped "$"
			for i < len(src) {
				ch := src[i]
				if ch == '{' && variable {
					// "${name}": nginx keeps the brace in the word.
					variable = false
					b.WriteByte(ch)
					i++
					continue
				}
				if ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == ';' || ch == '{' {
					break // not "}": nginx keeps it in a word ("a}b")
				}
				variable = ch == '$'
				if ch == '\\' && i+1 < len(src) {
					line += unescape(&b, src[i+1])
					i += 2
					continue
				}
				b.WriteByte(ch)
				i++
			}
			toks = append(toks, token{text: b.String(), line: line})
		}
	}
	return toks, nil
}

// unescape writes what nginx makes of a backslash followed by c, in a
// quoted word or not: \", \', \\ stand for the character, \t, \r, \n
// for tab, carriage return and newline; any other pair stays as it is,
// backslash included ("a\;b" is the word a\;b, not "a;b"). It returns
// the lines the pair ends (1 for a backslash before a newline).
func unescape(b *strings.Builder, c byte) int {
	switch c {
	case '"', '\'', '\\':
		b.WriteByte(c)
	case 't':
		b.WriteByte('\t')
	case 'r':
		b.WriteByte('\r')
	case 'n':
		b.WriteByte('\n')
	default:
		b.WriteByte('\\')
		b.WriteByte(c)
		if c == '\n' {
			return 1
		}
	}
	return 0
}

// ParseSite reads a site file's server blocks. It fails, with a reason
// fit for an operator, when the file does not parse, when it has no
// server block, when a server block has no server_name, or when a name is
// not a DNS name a certificate could cover (event.ValidDomain: lower
// case, "*.example.com" wildcards allowed; regular expressions, "_",
// "", ".example.com", variables and the like are refused). Include
// directives are not followed.
func ParseSite(src []byte) (SiteInfo, error) {
	toks, err := tokenize(string(src))
	if err != nil {
		return SiteInfo{}, err
	}
	var info SiteInfo
	var stack []block
	var words []token // the directive being read
	servers := 0
	for _, t := range toks {
		if !t.quoted {
			switch t.text {
			case ";":
				if len(words) == 0 {
					continue
				}
				if err := directive(words, stack, &info); err != nil {
					return SiteInfo{}, err
				}
				if words[0].text == "server_name" && len(stack) > 0 && stack[len(stack)-1].name == "server" {
					stack[len(stack)-1].names++
				}
				words = words[:0]
				continue
			case "{":
				if len(words) == 0 {
					return SiteInfo{}, fmt.Errorf("line %d: unexpected \"{\"", t.line)
				}
				name := words[0].text
				if name == "server" && !slices.ContainsFunc(stack, func(b block) bool { return b.name == "server" || b.name == "upstream" }) {
					servers++
				}
				stack = append(stack, block{name: name, line: words[0].line})
				words = words[:0]
				continue
			case "}":
				if len(words) > 0 {
					return SiteInfo{}, fmt.Errorf("line %d: directive %q has no closing \";\"", words[0].line, words[0].text)
				}
				if len(stack) == 0 {
					return SiteInfo{}, fmt.Errorf("line %d: unexpected \"}\"", t.line)
				}
				b := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				if b.name == "server" && b.names == 0 && !inside(stack, "upstream") {
					return SiteInfo{}, fmt.Errorf("server block at line %d has no server_name", b.line)
				}
				continue
			}
		}
		words = append(words, t)
	}
	if len(words) > 0 {
		return SiteInfo{}, fmt.Errorf("line %d: directive %q has no closing \";\"", words[0].line, words[0].text)
	}
	if len(stack) > 0 {
		return SiteInfo{}, fmt.Errorf("line %d: block %q is not closed", stack[len(stack)-1].line, stack[len(stack)-1].name)
	}
	if servers == 0 || len(info.Names) == 0 {
		return SiteInfo{}, fmt.Errorf("no server block with a server_name")
	}
	return info, nil
}

func inside(stack []block, name string) bool {
	for _, b := range stack {
		if b.name == name {
			return true
		}
	}
	return false
}

// directive takes in one simple directive.
func directive(words []token, stack []block, info *SiteInfo) error {
	switch words[0].text {
	case "ssl_certificate":
		info.TLS = true
	case "server_name":
		if len(stack) == 0 || stack[len(stack)-1].name != "server" {
			return fmt.Errorf("line %d: server_name outside a server block", words[0].line)
		}
		if len(words) == 1 {
			return fmt.Errorf("line %d: server_name has no names", words[0].line)
		}
		for _, w := range words[1:] {
			if err := checkName(w.text); err != nil {
				return fmt.Errorf("line %d: server_name %q: %v", w.line, w.text, err)
			}
			if !slices.Contains(info.Names, w.text) {
				info.Names = append(info.Names, w.text)
			}
		}
	}
	return nil
}

// checkName says why a server_name is not acceptable.
func checkName(n string) error {
	switch {
	case n == "":
		return fmt.Errorf("an empty name matches requests without a Host header; not allowed")
	case strings.HasPrefix(n, "~"):
		return fmt.Errorf("regular expression names are not allowed")
	case strings.ContainsAny(n, "$"):
		return fmt.Errorf("variables are not allowed")
	case strings.HasPrefix(n, "."):
		return fmt.Errorf("write the name and \"*.\" wildcard separately instead of a leading dot")
	case strings.ToLower(n) != n:
		return fmt.Errorf("write names in lower case")
	case !event.ValidDomain(n):
		return fmt.Errorf("not a valid DNS name")
	}
	return nil
}
