package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// ManFlag is the hidden flag that prints a tool's manual page: `make`
// runs `TOOL --man` after building, so the page says what the binary's
// own help says (the usage lines, each command's flags, example and
// exit statuses), never a copy of it.
const ManFlag = "man"

// Tools are the dh-deployer tools, which each manual page refers to.
var Tools = []string{"dh-receive", "dh-route", "dh-deploy", "dh-nginx", "dh-cert"}

// Manual renders the manual page of app in roff with the man(7) macros,
// section 1: NAME, SYNOPSIS (each command's usage line), DESCRIPTION,
// COMMANDS (each command's summary, flags, example and what exit status
// 1 means for it), OPTIONS, EXIT STATUS, ENVIRONMENT, FILES and SEE
// ALSO (the other Tools). Text is escaped: a backslash, every '-' and a
// line's leading dot or apostrophe cannot be taken for roff.
func Manual(app *App, fs *pflag.FlagSet) string {
	usages := make([]string, len(app.Commands))
	for i, c := range app.Commands {
		usages[i] = usageLine(app, c, fs)
	}
	var b strings.Builder
	b.WriteString(head(app.Name, "1", app.Summary))
	b.WriteString(synopsis(usages))
	b.WriteString(".SH DESCRIPTION\n")
	fmt.Fprintf(&b, "%s: %s.\n", roff(app.Name), roff(app.Summary))
	if app.Default != "" {
		fmt.Fprintf(&b, "Without a command it runs\n.BR %s .\n", roffQuote(app.Default))
	}
	if app.Doc != "" {
		b.WriteString(".PP\n" + roffText(app.Doc))
	}

	b.WriteString(".SH COMMANDS\n")
	for i, c := range app.Commands {
		fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", roffQuote(usages[i]), roff(c.Summary))
		for _, name := range c.Flags {
			flagItem(&b, fs.Lookup(name), ".RS\n", ".RE\n")
		}
		if c.Example != "" {
			fmt.Fprintf(&b, ".IP\nExample:\n.RS\n.nf\n%s.fi\n.RE\n", roffText(c.Example))
		}
		if c.Fails != "" {
			fmt.Fprintf(&b, ".IP\nExit status 1: %s.\n", roff(c.Fails))
		}
	}

	b.WriteString(".SH OPTIONS\n")
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Hidden {
			flagItem(&b, f, "", "")
		}
	})

	b.WriteString(".SH \"EXIT STATUS\"\n")
	b.WriteString(roffText(strings.ReplaceAll(exitStatuses(app.fails()), "\n", " ")))

	b.WriteString(`.SH ENVIRONMENT
.TP
.B DH_CONFIG
the configuration file when no \-c is given
.TP
.B DH_DATABASE_URL
overrides the configuration's database_url
.TP
.B DH_LOG_LEVEL
debug, info (the default), warn or error
.TP
.B JOURNAL_STREAM
set by systemd: log lines carry their priority and no time stamp
.SH FILES
.TP
.I /etc/dh\-deployer/config.toml
the configuration shared by every dh\-deployer tool
.TP
.I /usr/share/doc/dh\-deployer/
the operator's documentation: operations.md, receive.md, route.md, deploy.md, nginx.md, cert.md
`)
	b.WriteString(seeAlso(app.Name))
	return b.String()
}

// head is a page's title line (.TH, in section) and its NAME section:
// name and what it is.
func head(name, section, summary string) string {
	return fmt.Sprintf(".TH %s %s \"\" %s \"dh-deployer manual\"\n.SH NAME\n%s \\- %s\n",
		strings.ToUpper(name), section, roffQuote("dh-deployer "+VersionString()), roff(name), roff(summary))
}

// synopsis is the SYNOPSIS section: the usage lines, one a line.
func synopsis(usages []string) string {
	var b strings.Builder
	b.WriteString(".SH SYNOPSIS\n")
	for i, u := range usages {
		if i > 0 {
			b.WriteString(".br\n")
		}
		fmt.Fprintf(&b, ".B %s\n", roffQuote(u))
	}
	return b.String()
}

// seeAlso is the SEE ALSO section: the Tools but name.
func seeAlso(name string) string {
	var refs []string
	for _, o := range Tools {
		if o != name {
			refs = append(refs, ".BR "+roff(o)+" (1)")
		}
	}
	return ".SH \"SEE ALSO\"\n" + strings.Join(refs, ",\n") + "\n"
}

// flagItem writes a tagged paragraph of f (its spellings and value name,
// then its usage), between open and close.
func flagItem(b *strings.Builder, f *pflag.Flag, open, close string) {
	if f == nil {
		return
	}
	tag := "--" + f.Name
	if f.Shorthand != "" {
		tag = "-" + f.Shorthand + ", " + tag
	}
	if v := valueName(f); v != "" {
		tag += " " + v
	}
	_, usage := pflag.UnquoteUsage(f)
	fmt.Fprintf(b, "%s.TP\n.B %s\n%s\n%s", open, roffQuote(tag), roff(usage), close)
}

// roff escapes one line of text for roff: a backslash, '-' (else a
// hyphen, not a minus, in a command line), and a leading dot or
// apostrophe (else a request).
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// roffText escapes text line by line (a blank line starts a paragraph),
// each line ending in a newline.
func roffText(text string) string {
	var b strings.Builder
	for line := range strings.Lines(strings.TrimSpace(text) + "\n") {
		line = strings.TrimRight(line, "\n")
		if strings.TrimSpace(line) == "" {
			b.WriteString(".PP\n")
			continue
		}
		b.WriteString(roff(line) + "\n")
	}
	return b.String()
}

// roffQuote is s escaped as one macro argument: in double quotes, each
// '"' doubled.
func roffQuote(s string) string {
	return `"` + strings.ReplaceAll(roff(s), `"`, `""`) + `"`
}

// TextManual renders, in the same roff as Manual, the manual page of a
// program that is not built on this package (dh-deployer-acl, a shell
// script) from its --help text: a first paragraph "NAME: what it does",
// usage lines indented by two spaces and starting with name, each
// followed by its description indented further, and closing paragraphs.
// The first paragraph gives NAME and DESCRIPTION, the usage lines
// SYNOPSIS and COMMANDS, the closing paragraphs OPTIONS. section is the
// manual section ("8" for an administrator's command).
func TextManual(name, section, help string) (string, error) {
	paras := strings.Split(strings.TrimSpace(help), "\n\n")
	what, ok := strings.CutPrefix(strings.Join(strings.Fields(paras[0]), " "), name+": ")
	if !ok || len(paras) < 2 {
		return "", fmt.Errorf("%s --help: want a first paragraph %q, then the usage lines", name, name+": what it does")
	}
	summary, _, _ := strings.Cut(what, ". ")
	var b strings.Builder
	b.WriteString(head(name, section, strings.TrimSuffix(summary, ".")))
	var usages []string
	var commands strings.Builder
	for line := range strings.Lines(paras[1] + "\n") {
		line = strings.TrimRight(line, "\n")
		if usage, ok := strings.CutPrefix(line, "  "+name+" "); ok {
			usages = append(usages, name+" "+usage)
			fmt.Fprintf(&commands, ".TP\n.B %s\n", roffQuote(name+" "+usage))
			continue
		}
		if len(usages) == 0 {
			return "", fmt.Errorf("%s --help: the usage lines start with %q, not %q", name, "  "+name+" ", line)
		}
		commands.WriteString(roff(strings.TrimSpace(line)) + "\n")
	}
	b.WriteString(synopsis(usages))
	fmt.Fprintf(&b, ".SH DESCRIPTION\n%s\n.SH COMMANDS\n%s", roff(what), commands.String())
	if len(paras) > 2 {
		b.WriteString(".SH OPTIONS\n" + roffText(strings.Join(paras[2:], "\n\n")))
	}
	b.WriteString(seeAlso(name))
	return b.String(), nil
}
