package route_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/route"
	"github.com/dh-deployer/dh-deployer/pkg/store"
)

// ruleDecision is the routing rule as config states it, deployment by
// deployment: the oracle the routing table must agree with.
func ruleDecision(cfg *config.Config, repo, ref string) route.Decision {
	branch, isBranch := strings.CutPrefix(ref, "refs/heads/")
	tag, isTag := strings.CutPrefix(ref, "refs/tags/")
	var targets []string
	reason := route.ReasonNotFollowed
	for _, name := range cfg.DeploymentNames() {
		d, _ := cfg.Deployment(name)
		if !d.MatchesRepository(repo) || !(isBranch && d.FollowsBranch(branch)) && !(isTag && d.FollowsTag(tag)) {
			continue
		}
		switch {
		case !d.TakesEvent("push"):
			if reason == route.ReasonNotFollowed {
				reason = route.ReasonEventNotTaken
			}
		case !d.IsEnabled():
			reason = route.ReasonDisabled
		default:
			targets = append(targets, name)
		}
	}
	if len(targets) == 0 {
		return route.Decision{Status: store.StatusVoided, Reason: reason}
	}
	return route.Decision{Status: store.StatusRouted, Deployments: targets}
}

// The routing table decides every push as the rule does: repositories in
// any case, branches and tags by name and by pattern, disabled
// deployments, events not taken, at 1 and at many deployments.
func TestTableAgreesWithTheRule(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.toml")
	doc := fmt.Sprintf("queue_dir = %q\n", t.TempDir()) + deployments + manyDeployments(50) + `
[deployments.zz-also-drone]
repository = "BRADRYDZEWSKI/drone-test-go"
branches   = ["feature-[ab]*", "main"]
tags       = ["v1.?"]
path       = "/srv/zz"
`
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	table := route.NewTable(cfg)
	repos := []string{"Codertocat/Hello-World", "codertocat/hello-world", "CODERTOCAT/HELLO-WORLD", "bradrydzewski/drone-test-go",
		"agoda-com/samsahai-example", "packit-service/hello-world", "bkeepers-inc/test", "org/repo-7", "ORG/REPO-49", "org/repo-50", "someone/else"}
	refs := []string{"refs/heads/master", "refs/heads/release", "refs/heads/main", "refs/heads/release-1", "refs/heads/feature-a1",
		"refs/heads/feature-c", "refs/heads/phantomnat-patch-1", "refs/heads/build-branch", "refs/heads/bkeepers-patch-3",
		"refs/tags/simple-x", "refs/tags/v1.2", "refs/tags/v10", "refs/tags/master", "refs/heads/v1"}
	for _, repo := range repos {
		for _, ref := range refs {
			payload := fmt.Sprintf(`{"ref":%q,"before":"%040d","after":"%040d","repository":{"full_name":%q}}`, ref, 0, 1, repo)
			ev := &event.GitHubEvent{Delivery: "d", Event: "push", ReceivedAt: time.Now(), Payload: []byte(payload)}
			_, got, err := table.Match(ev)
			if err != nil {
				t.Fatalf("Match(%s %s) = %v", repo, ref, err)
			}
			want := ruleDecision(cfg, repo, ref)
			if got.Status != want.Status || got.Reason != want.Reason || !slices.Equal(got.Deployments, want.Deployments) {
				t.Errorf("Match(%s %s) = %+v; the rule says %+v", repo, ref, got, want)
			}
		}
	}
}
