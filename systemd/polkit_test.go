package systemd_test

import (
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// TestPolkitRules: the shipped rule lets each stage user do exactly its
// root work through systemd, and answers nothing else.
func TestPolkitRules(t *testing.T) {
	tests := []struct {
		q    testenv.PolkitQuestion
		want string
	}{
		{testenv.PolkitQuestion{User: "dh-nginx", Unit: "dh-nginx-test.service", Verb: "start"}, "yes"},
		{testenv.PolkitQuestion{User: "dh-nginx", Unit: "nginx.service", Verb: "reload"}, "yes"},
		{testenv.PolkitQuestion{User: "dh-cert", Unit: "dh-certbot.service", Verb: "start"}, "yes"},
		// Anything else is left to polkit's defaults (no, for a daemon).
		{testenv.PolkitQuestion{User: "dh-nginx", Unit: "nginx.service", Verb: "stop"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-nginx", Unit: "nginx.service", Verb: "restart"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-nginx", Unit: "dh-nginx-test.service", Verb: "stop"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-nginx", Unit: "dh-certbot.service", Verb: "start"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-cert", Unit: "dh-nginx-test.service", Verb: "start"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-cert", Unit: "nginx.service", Verb: "reload"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-cert", Unit: "dh-certbot.service", Verb: "restart"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-deploy", Unit: "dh-certbot.service", Verb: "start"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-receive", Unit: "nginx.service", Verb: "reload"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-route", Unit: "dh-nginx-test.service", Verb: "start"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-nginx", Unit: "nginx.service", Verb: "reload",
			Action: "org.freedesktop.systemd1.manage-unit-files"}, "no answer"},
		{testenv.PolkitQuestion{User: "dh-nginx", Unit: "hasOwnProperty", Verb: "start"}, "no answer"},
		{testenv.PolkitQuestion{User: "constructor", Unit: "dh-nginx-test.service", Verb: "start"}, "no answer"},
	}
	var qs []testenv.PolkitQuestion
	for _, tt := range tests {
		qs = append(qs, tt.q)
	}
	got := testenv.Polkit(t, []string{"polkit/dh-deployer.rules"}, qs)
	for i, tt := range tests {
		if got[i] != tt.want {
			t.Errorf("%s %s %s (%s): %q; want %q", tt.q.User, tt.q.Verb, tt.q.Unit, tt.q.Action, got[i], tt.want)
		}
	}
}
