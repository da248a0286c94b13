// Package doctor checks a dh-deployer host and says, for each thing an
// operator can get wrong, whether it is right and, when not, the exact
// command that fixes it: `dh-route doctor`.
//
// The checks are a table (Checks): a group and a function that returns
// one Result per thing checked. Add a row to check something new. The
// expected users, directories, owners, modes and ACLs are read from the
// installed sysusers.d and tmpfiles.d files, and the expected grants from
// the roles.sql embedded in the binary, so a change there is checked
// without a change here.
//
// It needs root (it reads every stage's files, asks PostgreSQL as the
// postgres superuser and runs git as each deployment's user). It changes
// nothing.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/setup"
)

// Result is one checked thing.
type Result struct {
	Group  string `json:"group"`
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Host is what the checks look at.
type Host struct {
	Cfg       *config.Config
	Run       *setup.Runner
	DB        *setup.DB // nil when database_url is unusable
	Installed setup.Installed
	Booted    bool
}

// Check is one row of the table.
type Check struct {
	Group string
	Run   func(ctx context.Context, h *Host) []Result
}

// Checks are run in this order.
var Checks = []Check{
	{"config", configChecks},
	{"users", userChecks},
	{"dirs", dirChecks},
	{"rules", ruleChecks},
	{"secret", secretChecks},
	{"database", databaseChecks},
	{"units", unitChecks},
	{"nginx", nginxChecks},
	{"deployments", deploymentChecks},
	{"webhook", webhookChecks},
}

// Run runs the checks of the groups named (all when none).
func Run(ctx context.Context, h *Host, groups ...string) []Result {
	var rs []Result
	for _, c := range Checks {
		if len(groups) > 0 && !slices.Contains(groups, c.Group) {
			continue
		}
		for _, r := range c.Run(ctx, h) {
			r.Group = c.Group
			rs = append(rs, r)
		}
	}
	return rs
}

// Passed reports whether every result is OK.
func Passed(rs []Result) bool {
	for _, r := range rs {
		if !r.OK {
			return false
		}
	}
	return true
}

// Print writes one line per result: ✔ or ✘, the group, the thing and,
// for a failure, the command that fixes it.
func Print(w io.Writer, rs []Result) {
	for _, r := range rs {
		if r.OK {
			fmt.Fprintf(w, "✔ %s: %s: %s\n", r.Group, r.Name, r.Detail)
		} else {
			fmt.Fprintf(w, "✘ %s: %s: %s — fix: %s\n", r.Group, r.Name, r.Detail, r.Fix)
		}
	}
}

// PrintJSON writes {"ok": bool, "checks": [...]} for monitoring.
func PrintJSON(w io.Writer, rs []Result) error {
	if rs == nil {
		rs = []Result{}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(struct {
		OK     bool     `json:"ok"`
		Checks []Result `json:"checks"`
	}{Passed(rs), rs})
}

// ok and fail make results.
func ok(name, detail string) Result { return Result{Name: name, OK: true, Detail: detail} }
func fail(name, detail, fix string) Result {
	return Result{Name: name, Detail: detail, Fix: fix}
}

// fromErr is ok(name, detail) when err is nil, else a failure saying err,
// fixed by its hint (or by fix when it has none).
func fromErr(name, detail string, err error, fix string) Result {
	if err == nil {
		return ok(name, detail)
	}
	if h := hint.Of(err); h != "" {
		fix = h
	}
	return fail(name, err.Error(), fix)
}
