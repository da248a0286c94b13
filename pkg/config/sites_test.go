package config

import (
	"os"
	"path"
	"slices"
	"strings"
	"testing"
)

// rulesOf decodes the fuzzer's text form of a site filter: one rule a
// line, "+a,b" includes and "-a,b" excludes the comma-separated select
// patterns. Patterns Validate would refuse are dropped, and so are rules
// left without any, so the rules are ones a loaded configuration can
// hold.
func rulesOf(spec string) []SiteRule {
	var rules []SiteRule
	for _, line := range strings.Split(spec, "\n") {
		if line == "" {
			continue
		}
		r := SiteRule{Rule: "exclude"}
		if line[0] == '+' {
			r.Rule = "include"
		}
		for _, p := range strings.Split(line[1:], ",") {
			if _, err := path.Match(p, ""); err == nil && p != "" && !strings.Contains(p, "/") {
				r.Select = append(r.Select, p)
			}
		}
		if len(r.Select) > 0 {
			rules = append(rules, r)
		}
	}
	return rules
}

// specOf is the inverse of rulesOf, for seeds.
func specOf(rules []SiteRule) string {
	var b strings.Builder
	for _, r := range rules {
		if r.Rule == "include" {
			b.WriteByte('+')
		} else {
			b.WriteByte('-')
		}
		b.WriteString(strings.Join(r.Select, ",") + "\n")
	}
	return b.String()
}

// lastMatch is the site filter written the other way round: the last
// rule with a matching pattern decides; none means not selected.
func lastMatch(rules []SiteRule, site string) bool {
	for _, r := range slices.Backward(rules) {
		for _, p := range r.Select {
			if ok, _ := path.Match(p, site); ok {
				return r.Rule == "include"
			}
		}
	}
	return false
}

// FuzzSelectsSite: the site filter is deterministic, agrees with "the last
// matching rule decides, none means excluded", and a rule selecting "*"
// resets everything before it: the result depends only on the rules from
// the last such rule on. Seeds: the rules in docs/config.example.toml and
// DESIGN.md's example, the cases of TestSelectsSite in pkg/nginx, and
// testdata/fuzz/FuzzSelectsSite.
func FuzzSelectsSite(f *testing.F) {
	for _, doc := range []string{designExample, examplePath} {
		if doc == examplePath {
			b, err := os.ReadFile(examplePath)
			if err != nil {
				f.Fatal(err)
			}
			doc = string(b)
		}
		c, err := Parse("seed.toml", []byte(doc))
		if err != nil {
			f.Fatal(err)
		}
		for _, name := range c.DeploymentNames() {
			d := c.Deployments[name]
			for _, r := range d.Sites {
				for _, site := range append(slices.Clone(r.Select), "other.example.org", "api.durhack.com") {
					f.Add(specOf(d.Sites), site)
				}
			}
		}
	}
	f.Add("", "a.test")
	f.Add("+*\n-b.test\n", "b.test")
	f.Add("+*\n-b.test,c.*\n+c.keep.test\n", "c.keep.test")
	f.Add("+a.test\n-*\n+b.test\n", "a.test")
	f.Add("-a.test\n+a.test\n", "a.test")
	f.Add("+[a-c].test,*.durhack.com\n-staging.*\n", "staging.durhack.com")
	f.Fuzz(func(t *testing.T, spec, site string) {
		rules := rulesOf(spec)
		d := &Deployment{Kind: KindNginx, Sites: rules}
		got := d.SelectsSite(site)
		if again := (&Deployment{Sites: slices.Clone(rules)}).SelectsSite(site); again != got {
			t.Fatalf("SelectsSite(%q) with %q = %v, then %v", site, spec, got, again)
		}
		if want := lastMatch(rules, site); got != want {
			t.Fatalf("SelectsSite(%q) with %+v = %v; the last matching rule says %v", site, rules, got, want)
		}
		if strings.Contains(site, "/") {
			return // site names are file names; "*" does not match across "/"
		}
		for k, r := range rules {
			if !slices.Contains(r.Select, "*") {
				continue
			}
			tail := rules[k:]
			for _, before := range [][]SiteRule{nil, {{Rule: "include", Select: []string{site}}}, {{Rule: "exclude", Select: []string{"*"}}}} {
				if other := (&Deployment{Sites: append(slices.Clone(before), tail...)}).SelectsSite(site); other != got {
					t.Fatalf("SelectsSite(%q): rule %d selects \"*\", yet the rules before it matter: %+v gives %v, %+v gives %v",
						site, k, rules, got, append(before, tail...), other)
				}
			}
		}
		for _, last := range []string{"include", "exclude"} {
			all := append(slices.Clone(rules), SiteRule{Rule: last, Select: []string{"*"}})
			if got := (&Deployment{Sites: all}).SelectsSite(site); got != (last == "include") {
				t.Fatalf("SelectsSite(%q) with %+v ending in %s \"*\" = %v", site, rules, last, got)
			}
		}
	})
}
