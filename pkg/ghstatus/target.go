package ghstatus

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"text/template"

	"github.com/dh-deployer/dh-deployer/pkg/cell"
)

// maxTargetURL bounds a rendered target URL, in bytes.
const maxTargetURL = 2048

// Fields are what a github.target_url template may use, such as
// "https://deploy.example/runs/{{.RunID}}" or
// "https://deploy.example/{{.Deployment}}/{{.Commit}}". text/template's own
// functions apply: {{slice .Commit 0 7}} is the short commit id,
// {{urlquery .Ref}} escapes for a query. Any other name is an error when
// the template runs.
type Fields struct {
	Deployment string // the deployment's name: "api"
	Repository string // "owner/name": "ducompsoc/durhack"
	Commit     string // the full commit id being deployed
	Ref        string // the pushed ref: "refs/heads/main"
	Delivery   string // the X-GitHub-Delivery id of the push
	RunID      int64  // the run's id in the store (table runs)
}

// RenderTarget executes the text/template tmpl with fields (normally a
// Fields) and checks the result, trimmed of spaces, is an absolute http or
// https URL without user information, of at most 2048 bytes. An empty
// tmpl gives "" and no error: no details link.
func RenderTarget(tmpl string, fields any) (string, error) {
	if tmpl == "" {
		return "", nil
	}
	t, err := template.New("target_url").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("ghstatus: target_url template: %w", err)
	}
	var b strings.Builder
	if err := t.Execute(&b, fields); err != nil {
		return "", fmt.Errorf("ghstatus: target_url template: %w", err)
	}
	s := strings.TrimSpace(b.String())
	if err := checkTarget(s); err != nil {
		return "", fmt.Errorf("ghstatus: target_url template gives %q: %w", cell.Line(s, 200), err)
	}
	return s, nil
}

// checkTarget checks a target URL.
func checkTarget(s string) error {
	if len(s) > maxTargetURL {
		return fmt.Errorf("longer than %d bytes", maxTargetURL)
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return errors.New("not an absolute http or https URL")
	case u.User != nil:
		return errors.New("must not contain user information")
	}
	return nil
}
