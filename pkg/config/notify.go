package config

import (
	"net"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kinds of notification target.
const (
	TargetSlack      = "slack"      // {"text": ...}: Slack's incoming webhooks
	TargetMattermost = "mattermost" // {"text": ...}: Mattermost's (Markdown)
	TargetDiscord    = "discord"    // {"content": ...}: Discord's webhooks
	TargetEmail      = "email"      // a mail through SMTP or the local sendmail
)

// What a target is told about: the values of NotifyTarget.On.
const (
	OnSuccess     = "success"      // a run of one of its deployments succeeded
	OnFailure     = "failure"      // a run of one of its deployments failed
	OnCertExpiry  = "cert-expiry"  // a certificate expires within notify.cert_expiry_days
	OnFailedEntry = "failed-entry" // an entry landed in a failed/ directory
)

// Defaults of the [notify] table.
const (
	DefaultCertExpiryDays = 14
	DefaultCertLifetime   = 90 * 24 * time.Hour // Let's Encrypt's
)

// DefaultOn is what a target without "on" is told about.
var DefaultOn = []string{OnFailure, OnCertExpiry, OnFailedEntry}

// Notify is the [notify] table: where notifications go. dh-route sends
// them all (docs/route.md, "Notifications"): a deployment's worker only
// asks, with an entry in queues/status, and never reads a target's
// secrets.
type Notify struct {
	// DefaultTargets names the targets of every deployment without a
	// notify key of its own, and of the notices that are not about one
	// deployment (certificates, failed entries of queues/main and
	// queues/status). Optional: default none.
	DefaultTargets []string `toml:"default_targets"`

	// Targets defines each target by its name ([notify.targets.NAME]).
	Targets map[string]*NotifyTarget `toml:"targets"`

	// CertExpiryDays: dh-route sends a "cert-expiry" notice, once a day
	// per certificate, for each certificate dh-cert records that expires
	// within this many days. 0 disables the notices. Default 14.
	CertExpiryDays int `toml:"cert_expiry_days"`

	// CertLifetime is how long a certificate is valid after dh-cert
	// issued it, used only until dh-cert has recorded the certificate's
	// own expiry (certs.not_after: at its next renew after migration
	// 000014): the expiry is then estimated as the certs table's
	// issued_at plus this. Default "2160h" (90 days).
	CertLifetime time.Duration `toml:"cert_lifetime"`
}

// NotifyTarget is one [notify.targets.NAME] table: a chat webhook or an
// email address list.
type NotifyTarget struct {
	// Name is the key under [notify.targets]; filled in by Load.
	Name string `toml:"-"`

	// Kind is "slack", "mattermost", "discord" or "email". Required.
	Kind string `toml:"kind"`

	// On lists what the target is told about: "success", "failure",
	// "cert-expiry", "failed-entry". Default ["failure", "cert-expiry",
	// "failed-entry"]: a success is news only where asked for.
	On []string `toml:"on"`

	// URLFile holds the chat webhook's URL (http or https; one trailing
	// newline is ignored): a secret, read by dh-route alone (a relative
	// name is looked up as CredentialPath says). Required for the chat
	// kinds, not allowed for "email".
	URLFile string `toml:"url_file"`

	// Username is the name the chat shows the messages under, where it
	// allows one. Optional.
	Username string `toml:"username"`

	// To are the addresses an "email" target writes to. Required for
	// "email".
	To []string `toml:"to"`

	// From is the sender's address of an "email" target. Required for
	// "email".
	From string `toml:"from"`

	// SMTP is the mail server, "host:port" (submission, 587, or 25);
	// implicit TLS (465) is not supported. Empty, the default, hands the
	// mail to the local sendmail program (found on the system PATH).
	SMTP string `toml:"smtp"`

	// StartTLS, with SMTP, requires the server to offer STARTTLS and
	// sends nothing before the connection is encrypted. Default true;
	// false sends in clear text (a relay on this host).
	StartTLS *bool `toml:"starttls"`

	// SMTPUser is the user to authenticate as (AUTH PLAIN, only over
	// TLS or to a loopback server); with it, PasswordFile is required.
	// Optional.
	SMTPUser string `toml:"smtp_user"`

	// PasswordFile holds SMTPUser's password, read by dh-route alone
	// like URLFile.
	PasswordFile string `toml:"password_file"`
}

// Wants reports whether the target is told about what ("success", ...).
func (t *NotifyTarget) Wants(what string) bool { return slices.Contains(t.On, what) }

// NotifyTargets returns the targets of names that are told about what,
// skipping names the configuration does not define.
func (c *Config) NotifyTargets(names []string, what string) []*NotifyTarget {
	var out []*NotifyTarget
	for _, name := range names {
		if t, ok := c.Notify.Targets[name]; ok && t != nil && t.Wants(what) {
			out = append(out, t)
		}
	}
	return out
}

// NotifyURL reads the target's url_file like WebhookSecrets reads a
// secret, and checks it is an http or https URL.
func (c *Config) NotifyURL(t *NotifyTarget, getenv func(string) string) (string, error) {
	b, err := c.optionalSecret(t.URLFile, getenv)
	if err != nil || b == nil {
		return "", err
	}
	u, err := url.Parse(string(b))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		// The URL is a secret: name the file, not its content.
		return "", errorf("%s: not an http or https URL (notify.targets.%s.url_file)", t.URLFile, t.Name)
	}
	return string(b), nil
}

// SMTPPassword reads the target's password_file like WebhookSecrets
// reads a secret; nil without one.
func (c *Config) SMTPPassword(t *NotifyTarget, getenv func(string) string) ([]byte, error) {
	return c.optionalSecret(t.PasswordFile, getenv)
}

func (n *Notify) setDefaults(defined func(key ...string) bool) {
	if n.CertExpiryDays == 0 && !defined("notify", "cert_expiry_days") {
		n.CertExpiryDays = DefaultCertExpiryDays
	}
	if n.CertLifetime == 0 {
		n.CertLifetime = DefaultCertLifetime
	}
	for name, t := range n.Targets {
		if t == nil {
			continue
		}
		t.Name = name
		if t.On == nil {
			t.On = slices.Clone(DefaultOn)
		}
		if t.StartTLS == nil {
			t.StartTLS = new(true)
		}
	}
}

func (n *Notify) validate(ck *checker) {
	ck.targetNames(k("notify", "default_targets"), n.DefaultTargets, n.Targets)
	if n.CertExpiryDays < 0 {
		ck.add(k("notify", "cert_expiry_days"), "must not be negative (0 disables the notices)")
	}
	ck.positive(k("notify", "cert_lifetime"), n.CertLifetime)
	for name, t := range n.Targets {
		key := func(sub string) []string { return k("notify", "targets", name, sub) }
		if t == nil {
			ck.add(k("notify", "targets", name), "missing")
			continue
		}
		if !targetNameRE.MatchString(name) {
			ck.add(k("notify", "targets", name), "a target's name is [a-z0-9][a-z0-9_-]*")
		}
		for i, on := range t.On {
			if !slices.Contains([]string{OnSuccess, OnFailure, OnCertExpiry, OnFailedEntry}, on) {
				ck.addSub(key("on"), "["+strconv.Itoa(i)+"]", "unknown %q: want success, failure, cert-expiry or failed-entry", on)
			}
		}
		chat := t.Kind == TargetSlack || t.Kind == TargetMattermost || t.Kind == TargetDiscord
		switch {
		case chat:
			if t.URLFile == "" {
				ck.add(key("url_file"), "required for kind %q: the file holding the webhook's URL", t.Kind)
			} else {
				ck.credentialPath(key("url_file"), "", t.URLFile)
			}
			for _, s := range []string{"to", "from", "smtp", "smtp_user", "password_file"} {
				if t.emailKey(s) {
					ck.add(key(s), "only for kind %q", TargetEmail)
				}
			}
			if hasControl(t.Username) || len(t.Username) > 80 {
				ck.add(key("username"), "must be one line of at most 80 bytes")
			}
		case t.Kind == TargetEmail:
			if t.URLFile != "" || t.Username != "" {
				ck.add(k("notify", "targets", name), "url_file and username are for the chat kinds, not %q", TargetEmail)
			}
			if len(t.To) == 0 {
				ck.add(key("to"), "required for kind %q: the addresses to write to", TargetEmail)
			}
			for i, a := range t.To {
				if !plainAddress(a) {
					ck.addSub(key("to"), "["+strconv.Itoa(i)+"]", "%q is not a plain address (user@host)", a)
				}
			}
			if !plainAddress(t.From) {
				ck.add(key("from"), "required for kind %q: a plain address (user@host), not %q", TargetEmail, t.From)
			}
			if t.SMTP != "" {
				if host, port, err := net.SplitHostPort(t.SMTP); err != nil || host == "" || hasControl(host) {
					ck.add(key("smtp"), "must be host:port")
				} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
					ck.add(key("smtp"), "port %q must be a number from 0 to 65535", port)
				}
			} else if t.SMTPUser != "" || t.PasswordFile != "" {
				ck.add(key("smtp_user"), "smtp_user and password_file need smtp (sendmail takes no login)")
			}
			if (t.SMTPUser == "") != (t.PasswordFile == "") {
				ck.add(key("password_file"), "smtp_user and password_file go together")
			}
			if hasControl(t.SMTPUser) {
				ck.add(key("smtp_user"), "must not contain control characters")
			}
			if t.PasswordFile != "" {
				ck.credentialPath(key("password_file"), "", t.PasswordFile)
			}
		default:
			ck.add(key("kind"), "%q is not a kind of target: want slack, mattermost, discord or email", t.Kind)
		}
	}
}

// emailKey reports whether the email-only key s is set.
func (t *NotifyTarget) emailKey(s string) bool {
	switch s {
	case "to":
		return len(t.To) > 0
	case "from":
		return t.From != ""
	case "smtp":
		return t.SMTP != ""
	case "smtp_user":
		return t.SMTPUser != ""
	}
	return t.PasswordFile != ""
}

// targetNames checks a list of target names against the defined ones.
func (ck *checker) targetNames(key []string, names []string, targets map[string]*NotifyTarget) {
	for i, name := range names {
		if _, ok := targets[name]; !ok {
			ck.addSub(key, "["+strconv.Itoa(i)+"]", "no target %q in [notify.targets]", name)
		}
	}
}

// plainAddress reports whether a is a bare address such as
// "ops@example.org": no display name, no comment, nothing a header could
// be made of.
func plainAddress(a string) bool {
	p, err := mail.ParseAddress(a)
	return err == nil && p.Name == "" && p.Address == a && !strings.ContainsAny(a, " \t\r\n<>\",;")
}
