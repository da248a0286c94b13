package notify

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"strings"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cell"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/httpretry"
	"github.com/dh-deployer/dh-deployer/pkg/progpath"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/sysexec"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// Mail sends messages as email: through an SMTP server (SMTP set), or by
// handing them to the local sendmail program. From and To are plain
// addresses checked by the configuration (config.NotifyTarget); nothing of
// a Message reaches a header but the Subject, encoded.
type Mail struct {
	From string
	To   []string

	// SMTP is the server, "host:port"; "" uses sendmail.
	SMTP string
	// StartTLS requires STARTTLS before anything else is sent.
	StartTLS bool
	// TLS configures STARTTLS; nil verifies the server's certificate for
	// SMTP's host with the system's roots.
	TLS *tls.Config
	// User and Password authenticate (AUTH PLAIN; net/smtp sends it only
	// over TLS or to a loopback server). Optional.
	User, Password string

	// Sendmail is the sendmail program, an absolute path; "" looks
	// "sendmail" up in progpath.SystemPATH.
	Sendmail string

	// Hostname names this host in EHLO and the Message-ID. Default
	// os.Hostname.
	Hostname string

	// Logger receives the retries. Default: nothing is logged.
	Logger *slog.Logger

	// Retry is the retry policy (Attempts, Backoff, Timeout per try).
	Retry httpretry.Policy

	// Now is the clock of the Date header; nil means time.Now.
	Now func() time.Time
}

// Send sends m to every address of To, trying again after a connection
// error or a 4xx reply (sendmail: exit status 75). A 5xx reply fails at
// once (sysexits.Config: a relay or address refused; sysexits.NoPerm for
// authentication).
func (ml *Mail) Send(ctx context.Context, m Message) error {
	data, err := ml.Compose(m)
	if err != nil {
		return err
	}
	logger := cmp.Or(ml.Logger, slog.New(slog.DiscardHandler)).With("deployment", m.Deployment)
	if ml.SMTP == "" {
		return ml.Retry.Do(ctx, logger, "sendmail", func(ctx context.Context) (bool, error) { return ml.sendmail(ctx, data) })
	}
	return ml.Retry.Do(ctx, logger, "smtp to "+ml.SMTP, func(ctx context.Context) (bool, error) { return ml.smtp(ctx, data) })
}

// Compose returns the whole mail: headers from the configuration and the
// encoded Subject, then m as text/plain, quoted-printable.
func (ml *Mail) Compose(m Message) ([]byte, error) {
	now := time.Now
	if ml.Now != nil {
		now = ml.Now
	}
	id := make([]byte, 12)
	rand.Read(id)
	var b bytes.Buffer
	header := func(name, value string) {
		if strings.ContainsAny(value, "\r\n") { // only the configuration's values reach here
			value = strings.NewReplacer("\r", " ", "\n", " ").Replace(value)
		}
		b.WriteString(name + ": " + value + "\r\n")
	}
	header("From", ml.From)
	header("To", strings.Join(ml.To, ", "))
	// Clip makes it one line without control characters; QEncoding then
	// encodes anything but printable ASCII, so the payload's text cannot
	// end the header or start another.
	// Encoded-words are folded onto lines of their own, so that a long
	// non-ASCII subject keeps within the 998 bytes a line may have.
	subject := mime.QEncoding.Encode("utf-8", cell.Line(m.Summary, maxSummary))
	b.WriteString("Subject: " + strings.ReplaceAll(subject, "?= =?", "?=\r\n =?") + "\r\n")
	header("Date", now().Format(time.RFC1123Z))
	header("Message-ID", "<"+hex.EncodeToString(id)+"@"+ml.hostname()+">")
	header("MIME-Version", "1.0")
	header("Content-Type", `text/plain; charset="utf-8"`)
	header("Content-Transfer-Encoding", "quoted-printable")
	header("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	body := strings.ReplaceAll(strings.ReplaceAll(m.Text(), "\r\n", "\n"), "\n", "\r\n")
	if _, err := qp.Write([]byte(body)); err != nil {
		return nil, sysexits.Errorf(sysexits.Software, "notify: encode mail: %w", err)
	}
	if err := qp.Close(); err != nil {
		return nil, sysexits.Errorf(sysexits.Software, "notify: encode mail: %w", err)
	}
	return b.Bytes(), nil
}

func (ml *Mail) hostname() string {
	if ml.Hostname != "" {
		return ml.Hostname
	}
	if h, err := os.Hostname(); err == nil && h != "" && !strings.ContainsAny(h, " \r\n<>@") {
		return h
	}
	return "localhost"
}

// smtp makes one SMTP session; retry is true for what may pass later.
func (ml *Mail) smtp(ctx context.Context, data []byte) (retry bool, err error) {
	host, _, _ := net.SplitHostPort(ml.SMTP)
	fail := func(err error) (bool, error) {
		var te *textproto.Error
		switch {
		case errors.As(err, &te) && te.Code >= 400 && te.Code < 500:
			return true, queue.Retry(fmt.Errorf("notify: smtp %s: %w", ml.SMTP, err))
		case errors.As(err, &te) && (te.Code == 530 || te.Code == 534 || te.Code == 535):
			return false, sysexits.Errorf(sysexits.NoPerm, "notify: smtp %s: authentication refused: %w", ml.SMTP, err)
		case errors.As(err, &te):
			return false, sysexits.Errorf(sysexits.Config, "notify: smtp %s: %w", ml.SMTP, err)
		}
		return true, queue.Retry(fmt.Errorf("notify: smtp %s: %w", ml.SMTP, err))
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", ml.SMTP)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	if err := c.Hello(ml.hostname()); err != nil {
		return fail(err)
	}
	if ml.StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return false, hint.With(sysexits.Errorf(sysexits.Config, "notify: smtp %s offers no STARTTLS", ml.SMTP),
				"for a relay on this host, set starttls = false in the target")
		}
		cfg := ml.TLS
		if cfg == nil {
			cfg = &tls.Config{ServerName: host}
		}
		if err := c.StartTLS(cfg); err != nil {
			return fail(err)
		}
	}
	if ml.User != "" {
		if err := c.Auth(smtp.PlainAuth("", ml.User, ml.Password, host)); err != nil {
			return fail(err)
		}
	}
	if err := c.Mail(ml.From); err != nil {
		return fail(err)
	}
	for _, to := range ml.To {
		if err := c.Rcpt(to); err != nil {
			return fail(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fail(err)
	}
	if _, err := w.Write(data); err != nil {
		return fail(err)
	}
	if err := w.Close(); err != nil {
		return fail(err)
	}
	c.Quit() // the mail is accepted; a lost QUIT reply changes nothing
	return false, nil
}

// sendmail hands the mail to the sendmail program: the recipients as
// arguments after "--", never read from the headers (no -t).
func (ml *Mail) sendmail(ctx context.Context, data []byte) (retry bool, err error) {
	path := ml.Sendmail
	if path == "" {
		if path, err = progpath.InPath("sendmail", progpath.SystemPATH); err != nil {
			return false, hint.With(sysexits.Errorf(sysexits.Unavailable, "notify: sendmail: %w", err),
				"install a mail transfer agent (apt-get install exim4-daemon-light), or set smtp in the target")
		}
	}
	timeout := time.Minute
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	args := append([]string{"-i", "-f", ml.From, "--"}, ml.To...)
	_, err = sysexec.Run(ctx, sysexec.Cmd{Path: path, Args: args, Stdin: bytes.NewReader(data), Timeout: timeout,
		Env: []string{"PATH=" + progpath.SystemPATH}})
	if err != nil {
		var ee *sysexec.ExitError
		if errors.As(err, &ee) && ee.Result.ExitCode == sysexits.TempFail {
			return true, queue.Retry(fmt.Errorf("notify: sendmail: %w", err))
		}
		return false, sysexits.Errorf(sysexits.Unavailable, "notify: sendmail: %w", err)
	}
	return false, nil
}

// String says where the mail goes, for log lines: never a secret.
func (ml *Mail) String() string {
	if ml.SMTP == "" {
		return fmt.Sprintf("mail to %s via sendmail", strings.Join(ml.To, ", "))
	}
	return fmt.Sprintf("mail to %s via %s", strings.Join(ml.To, ", "), ml.SMTP)
}
