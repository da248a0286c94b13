package ghstatus_test

import (
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/ghstatus"
)

var fields = ghstatus.Fields{
	Deployment: "api",
	Repository: "ducompsoc/durhack",
	Commit:     "0123456789abcdef0123456789abcdef01234567",
	Ref:        "refs/heads/main",
	Delivery:   "72d3162e-cc78-11e3-81ab-4c9367dc0958",
	RunID:      42,
}

func TestRenderTarget(t *testing.T) {
	for _, tc := range []struct{ tmpl, want string }{
		{"", ""},
		{"https://deploy.example/runs/{{.RunID}}", "https://deploy.example/runs/42"},
		{"http://deploy.example/{{.Deployment}}/{{slice .Commit 0 7}}?ref={{urlquery .Ref}}", "http://deploy.example/api/0123456?ref=refs%2Fheads%2Fmain"},
		{"  https://github.com/{{.Repository}}/commit/{{.Commit}}\n", "https://github.com/ducompsoc/durhack/commit/0123456789abcdef0123456789abcdef01234567"},
		{"https://deploy.example/deliveries/{{.Delivery}}", "https://deploy.example/deliveries/72d3162e-cc78-11e3-81ab-4c9367dc0958"},
	} {
		got, err := ghstatus.RenderTarget(tc.tmpl, fields)
		if err != nil || got != tc.want {
			t.Errorf("RenderTarget(%q) = %q, %v; want %q, nil", tc.tmpl, got, err, tc.want)
		}
	}
}

func TestRenderTargetErrors(t *testing.T) {
	for _, tc := range []struct{ tmpl, contains string }{
		{"https://deploy.example/{{.Deploymnet}}", "Deploymnet"}, // no such field
		{"https://deploy.example/{{.RunID", "template"},          // does not parse
		{"https://deploy.example/{{shout .Ref}}", "shout"},       // no such function
		{"/runs/{{.RunID}}", "absolute"},                         // relative
		{"{{.Deployment}}.example/runs", "absolute"},             // no scheme
		{"javascript:alert({{.RunID}})", "absolute"},             // not http(s)
		{"ftp://deploy.example/{{.RunID}}", "absolute"},          // not http(s)
		{"https://{{.Deployment}}:pw@deploy.example/", "user"},   // credentials
		{"https://deploy.example/" + strings.Repeat("x", 3000), "longer"},
		{"{{if .Ref}}{{end}}", "absolute"}, // empty result
	} {
		got, err := ghstatus.RenderTarget(tc.tmpl, fields)
		if err == nil || !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("RenderTarget(%.60q) = %q, %v; want an error containing %q", tc.tmpl, got, err, tc.contains)
		}
	}
	// A map, unlike Fields, would let a misspelt key render as "<no value>".
	if got, err := ghstatus.RenderTarget("https://x.example/{{.Nope}}", map[string]string{"RunID": "1"}); err == nil {
		t.Errorf("RenderTarget with a missing map key = %q, nil; want an error", got)
	}
}
