package arch

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/dh-deployer/dh-deployer/"

// stages are the packages of the five stages; tools maps each tool to its
// stage.
var (
	stages = []string{"pkg/receive", "pkg/route", "pkg/deploy", "pkg/nginx", "pkg/cert"}
	tools  = map[string]string{
		"cmd/dh-receive": "pkg/receive",
		"cmd/dh-route":   "pkg/route",
		"cmd/dh-deploy":  "pkg/deploy",
		"cmd/dh-nginx":   "pkg/nginx",
		"cmd/dh-cert":    "pkg/cert",
	}
)

// forbidden lists, for a package or a binary, what it must not link
// (its dependencies, transitively; test files excluded).
var forbidden = map[string][]string{
	"cmd/dh-receive": {"pkg/store", "pkg/gitrepo", "pkg/sysexec"},
}

// noExitStatuses are packages that must not link pkg/sysexits, directly
// or through another package: they return plain errors (and, pkg/queue,
// outcomes: Retry, Stop, Fail), and pkg/cli alone turns errors into exit
// statuses (cli.ExitStatus).
var noExitStatuses = []string{"pkg/queue", "pkg/durable", "pkg/hint"}

// goList runs go list with args in the module's root and returns its lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return strings.Fields(string(out))
}

// deps returns the module's packages pkg links, itself excluded, as
// "pkg/x" and "cmd/x".
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	var own []string
	for _, p := range goList(t, "-deps", "./"+pkg) {
		if rel, ok := strings.CutPrefix(p, module); ok && rel != pkg {
			own = append(own, rel)
		}
	}
	return own
}

func TestNoStageImportsAnother(t *testing.T) {
	for _, stage := range stages {
		for _, dep := range deps(t, stage) {
			if dep != stage && slices.Contains(stages, dep) {
				t.Errorf("%s links %s; stages meet only through pkg/queue, pkg/event and pkg/store", stage, dep)
			}
		}
	}
}

func TestEachToolLinksOnlyItsStage(t *testing.T) {
	for tool, own := range tools {
		d := deps(t, tool)
		if !slices.Contains(d, own) {
			t.Errorf("%s does not link %s; update this test's tools", tool, own)
		}
		for _, dep := range d {
			if dep != own && slices.Contains(stages, dep) {
				t.Errorf("%s links %s, another tool's stage", tool, dep)
			}
		}
	}
}

func TestForbiddenDependencies(t *testing.T) {
	for pkg, bad := range forbidden {
		for _, dep := range deps(t, pkg) {
			if slices.Contains(bad, dep) {
				t.Errorf("%s links %s; it must link none of %v", pkg, dep, bad)
			}
		}
	}
}

func TestQueueKnowsNoExitStatuses(t *testing.T) {
	for _, pkg := range noExitStatuses {
		if slices.Contains(deps(t, pkg), "pkg/sysexits") {
			t.Errorf("%s links pkg/sysexits; return plain errors (or a queue outcome) and let pkg/cli decide the exit status", pkg)
		}
	}
}
