package testenv

import (
	"encoding/json"
	"os/exec"
	"testing"
)

// PolkitQuestion is one authorization polkitd would decide with the rules:
// the action org.freedesktop.systemd1.manage-units (systemd's question for
// `systemctl VERB UNIT`) unless Action says otherwise.
type PolkitQuestion struct {
	User   string `json:"user"`
	Action string `json:"action,omitempty"`
	Unit   string `json:"unit"`
	Verb   string `json:"verb"`
}

// polkitHarness loads rule files the way polkitd does (each file's
// polkit.addRule calls, in order) into node, with a polkit object that
// offers what the rules use, and answers each question with the first
// rule's result that is not NOT_HANDLED ("no answer" when none answers).
const polkitHarness = `
var fs = require("fs"), vm = require("vm");
var rules = [];
var polkit = {
  Result: { NO: "no", YES: "yes", AUTH_SELF: "auth_self", AUTH_SELF_KEEP: "auth_self_keep",
            AUTH_ADMIN: "auth_admin", AUTH_ADMIN_KEEP: "auth_admin_keep", NOT_HANDLED: null },
  addRule: function (f) { rules.push(f); },
  addAdminRule: function () {},
  log: function () {}
};
var ctx = vm.createContext({ polkit: polkit });
var args = JSON.parse(process.argv[1]);
args.files.forEach(function (f) { vm.runInContext(fs.readFileSync(f, "utf8"), ctx, { filename: f }); });
var answers = args.questions.map(function (q) {
  var details = { unit: q.unit, verb: q.verb };
  var action = { id: q.action || "org.freedesktop.systemd1.manage-units",
                 lookup: function (k) { return details[k]; } };
  var subject = { user: q.user, local: false, active: false, pid: 1,
                  isInGroup: function () { return false; }, isInNetGroup: function () { return false; } };
  for (var i = 0; i < rules.length; i++) {
    var r = rules[i](action, subject);
    if (r !== null && r !== undefined) { return r; }
  }
  return "no answer";
});
process.stdout.write(JSON.stringify(answers));
`

// Polkit answers the questions with the polkit rule files, run in node
// (polkitd's JavaScript rules are plain ECMAScript). It proves what the
// rules say; that polkitd and systemd ask these questions is the
// container test's to show.
func Polkit(t testing.TB, files []string, questions []PolkitQuestion) []string {
	t.Helper()
	node := Command(t, "node")
	arg, err := json.Marshal(map[string]any{"files": files, "questions": questions})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, "-e", polkitHarness, string(arg)).CombinedOutput()
	if err != nil {
		t.Fatalf("node (polkit rules %v): %v\n%s", files, err, out)
	}
	var answers []string
	if err := json.Unmarshal(out, &answers); err != nil {
		t.Fatalf("node (polkit rules %v) printed %q: %v", files, out, err)
	}
	return answers
}
