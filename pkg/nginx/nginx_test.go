package nginx

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cli"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

const all = `[{ rule = "include", select = ["*"] }]`

var ctx = context.Background()

func TestInstallChangeRemove(t *testing.T) {
	r := newRig(t, all)
	e1 := r.commit(map[string]string{
		"production/a.example.test.conf":          r.site("a.example.test", "a-v1"),
		"production/b.example.test.nginxconf":     r.site("b.example.test www.b.example.test", "b-v1"),
		"production/c.example.test.conf.disabled": r.site("c.example.test", "c-v1"),
		"snippets/common.conf":                    "# common\n",
		"README.md":                               "not a site\n",
	})
	res, err := r.in.Converge(ctx, e1)
	if err != nil {
		t.Fatalf("Converge(v1) = %+v, %v; want nil error", res, err)
	}
	want := map[string]string{
		"conf.d/a.example.test.conf": r.site("a.example.test", "a-v1"),
		"conf.d/b.example.test.conf": r.site("b.example.test www.b.example.test", "b-v1"),
		"snippets/common.conf":       "# common\n",
	}
	if got := r.confFiles(); !maps.Equal(got, want) {
		t.Fatalf("after v1 the files are %v; want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	r.waitHTTP("a.example.test", "a-v1")
	r.waitHTTP("www.b.example.test", "b-v1")
	if got := r.lastInstall(); got.Outcome != store.NginxSucceeded || len(got.Installed) != 3 || got.Commit != e1.Commit {
		t.Errorf("install row = %+v; want succeeded, 3 installed, commit %s", got, e1.Commit)
	}

	// Again: nothing to do.
	if res, err := r.in.Converge(ctx, e1); err != nil || res.Outcome != store.NginxUnchanged {
		t.Errorf("Converge(v1) again = %+v, %v; want unchanged", res, err)
	}

	// An operator makes an installed file root's (here: another owner);
	// a change keeps its owner and inode.
	aPath := filepath.Join(r.dir, "conf.d/a.example.test.conf")
	if err := os.Chown(aPath, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	before := stat(t, aPath)

	e2 := r.commit(map[string]string{
		"production/a.example.test.conf":      r.site("a.example.test", "a-v2"),
		"production/b.example.test.nginxconf": "",
	})
	if res, err := r.in.Converge(ctx, e2); err != nil || len(res.Removed) != 1 || len(res.Installed) != 1 {
		t.Fatalf("Converge(v2) = %+v, %v; want a changed, b removed", res, err)
	}
	r.waitHTTP("a.example.test", "a-v2")
	r.waitHTTP("b.example.test", "none")
	if _, err := os.Stat(filepath.Join(r.dir, "conf.d/b.example.test.conf")); !os.IsNotExist(err) {
		t.Errorf("b.example.test.conf after its removal: %v; want it gone", err)
	}
	after := stat(t, aPath)
	if after.Uid != 4242 || after.Ino != before.Ino {
		t.Errorf("changed file: uid %d inode %d; want uid 4242, inode %d (written in place)", after.Uid, after.Ino, before.Ino)
	}
	m, err := r.in.LoadManifest("sites")
	if err != nil || m.Commit != e2.Commit || len(m.Files) != 2 {
		t.Errorf("manifest = %+v, %v; want commit %s and 2 files", m, err, e2.Commit)
	}
}

func stat(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func TestSelectsSite(t *testing.T) {
	rules := func(rs ...config.SiteRule) *config.Deployment { return &config.Deployment{Sites: rs} }
	inc := func(s ...string) config.SiteRule { return config.SiteRule{Rule: "include", Select: s} }
	exc := func(s ...string) config.SiteRule { return config.SiteRule{Rule: "exclude", Select: s} }
	for _, tc := range []struct {
		d    *config.Deployment
		site string
		want bool
	}{
		{rules(), "a.test", false},
		{rules(inc("a.test")), "a.test", true},
		{rules(inc("a.test")), "b.test", false},
		{rules(inc("*")), "b.test", true},
		{rules(inc("*"), exc("b.test")), "b.test", false},
		{rules(inc("*"), exc("b.test")), "a.test", true},
		{rules(inc("a.test"), exc("*")), "a.test", false},                // "*" resets what came before
		{rules(inc("a.test"), exc("*"), inc("b.test")), "b.test", true},  // evaluation starts at the last "*"
		{rules(inc("a.test"), exc("*"), inc("b.test")), "a.test", false}, //
		{rules(exc("a.test"), inc("a.test")), "a.test", true},            // the last matching rule wins
		{rules(inc("a.test"), exc("a.test")), "a.test", false},
	} {
		if got := tc.d.SelectsSite(tc.site); got != tc.want {
			t.Errorf("SelectsSite(%q) with %+v = %v; want %v", tc.site, tc.d.Sites, got, tc.want)
		}
	}
}

func TestFilterRules(t *testing.T) {
	r := newRig(t, `[{ rule = "include", select = ["*"] }, { rule = "exclude", select = ["b.example.test", "c.*"] }, { rule = "include", select = ["c.keep.test"] }]`)
	e := r.commit(map[string]string{
		"production/a.example.test.conf": r.site("a.example.test", "a"),
		"production/b.example.test.conf": r.site("b.example.test", "b"),
		"production/c.example.test.conf": r.site("c.example.test", "c"),
		"production/c.keep.test.conf":    r.site("c.keep.test", "keep"),
	})
	if _, err := r.in.Converge(ctx, e); err != nil {
		t.Fatalf("Converge() = %v", err)
	}
	got := slices.Sorted(maps.Keys(r.confFiles()))
	want := []string{"conf.d/a.example.test.conf", "conf.d/c.keep.test.conf"}
	if !slices.Equal(got, want) {
		t.Errorf("installed %v; want %v", got, want)
	}
	r.waitHTTP("c.keep.test", "keep")
	r.waitHTTP("b.example.test", "none")
}

func TestConflictWithUnmanagedFile(t *testing.T) {
	r := newRig(t, all)
	theirs := "# the operator's own file\n"
	r.write(filepath.Join(r.dir, "conf.d/a.example.test.conf"), theirs)
	// An identical unmanaged file is adopted rather than a conflict.
	r.write(filepath.Join(r.dir, "conf.d/b.example.test.conf"), r.site("b.example.test", "b"))
	e := r.commit(map[string]string{
		"production/a.example.test.conf": r.site("a.example.test", "a"),
		"production/b.example.test.conf": r.site("b.example.test", "b"),
		"production/c.example.test.conf": r.site("c.example.test", "c"),
	})
	res, err := r.in.Converge(ctx, e)
	if cli.ExitStatus(err) != sysexits.DataErr || !strings.Contains(err.Error(), "a.example.test.conf") {
		t.Fatalf("Converge() = %v; want a DataErr naming the conflicting file", err)
	}
	if got, _ := os.ReadFile(filepath.Join(r.dir, "conf.d/a.example.test.conf")); string(got) != theirs {
		t.Errorf("the unmanaged file was changed to %q", got)
	}
	if len(res.Conflicts) != 1 || len(res.Adopted) != 1 || res.Outcome != store.NginxPartial {
		t.Errorf("result %+v; want 1 conflict, 1 adopted, partial", res)
	}
	r.waitHTTP("c.example.test", "c")
	// The conflicting file is not managed: removing the site leaves it.
	e2 := r.commit(map[string]string{"production/a.example.test.conf": "", "production/b.example.test.conf": ""})
	if _, err := r.in.Converge(ctx, e2); err != nil {
		t.Fatalf("Converge(v2) = %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(r.dir, "conf.d/a.example.test.conf")); string(got) != theirs {
		t.Errorf("the unmanaged file was changed to %q", got)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "conf.d/b.example.test.conf")); !os.IsNotExist(err) {
		t.Errorf("the adopted file b is still there after its removal: %v", err)
	}
	if row := r.lastInstall(); row.Outcome != store.NginxSucceeded || len(row.Removed) != 1 {
		t.Errorf("row %+v; want succeeded, 1 removed", row)
	}
}

func TestBrokenSiteRestoresPreviousFiles(t *testing.T) {
	r := newRig(t, all)
	e1 := r.commit(map[string]string{
		"production/a.example.test.conf": r.site("a.example.test", "site-v1"),
		"production/b.example.test.conf": r.site("b.example.test", "b-v1"),
		"snippets/x.conf":                "# x v1\n",
	})
	if _, err := r.in.Converge(ctx, e1); err != nil {
		t.Fatal(err)
	}
	r.waitHTTP("a.example.test", "site-v1")
	os.Chmod(filepath.Join(r.dir, "conf.d/b.example.test.conf"), 0o600)
	before := r.confFiles()
	modes := map[string]os.FileMode{}
	for name := range before {
		fi, _ := os.Stat(filepath.Join(r.dir, name))
		modes[name] = fi.Mode()
	}

	// v2 changes a (fine), breaks b (the site policy allows gzip, nginx
	// rejects its value), adds c, removes the snippet.
	e2 := r.commit(map[string]string{
		"production/a.example.test.conf": r.site("a.example.test", "site-v2"),
		"production/b.example.test.conf": "server {\n    server_name b.example.test;\n    gzip maybe;\n}\n",
		"production/c.example.test.conf": r.site("c.example.test", "c"),
		"snippets/x.conf":                "",
	})
	res, err := r.in.Converge(ctx, e2)
	if cli.ExitStatus(err) != sysexits.DataErr || !strings.Contains(err.Error(), `"gzip"`) {
		t.Fatalf("Converge(broken) = %v; want a DataErr with nginx's message", err)
	}
	if res.Outcome != store.NginxFailed {
		t.Errorf("outcome %q; want failed", res.Outcome)
	}
	after := r.confFiles()
	if !maps.Equal(before, after) {
		t.Errorf("files after the failed test differ:\nbefore %q\nafter  %q", before, after)
	}
	for name, mode := range modes {
		if fi, _ := os.Stat(filepath.Join(r.dir, name)); fi == nil || fi.Mode() != mode {
			t.Errorf("%s mode after restore: %v; want %v", name, fi.Mode(), mode)
		}
	}
	// nginx was not reloaded with the broken files, and still serves v1.
	time.Sleep(200 * time.Millisecond)
	r.waitHTTP("a.example.test", "site-v1")
	r.waitHTTP("c.example.test", "none")
	row := r.lastInstall()
	if row.Outcome != store.NginxFailed || !strings.Contains(row.Error, `"gzip"`) {
		t.Errorf("row %+v; want failed with nginx's message", row)
	}
	if _, err := os.Stat(r.in.journalPath("sites")); !os.IsNotExist(err) {
		t.Errorf("journal left behind: %v", err)
	}
	m, _ := r.in.LoadManifest("sites")
	if m.Commit != e1.Commit {
		t.Errorf("manifest at %s; want still %s", m.Commit, e1.Commit)
	}
}

func TestMissingCertificate(t *testing.T) {
	r := newRig(t, all)
	e := r.commit(map[string]string{
		"production/a.example.test.conf":      r.site("a.example.test", "a"),
		"production/secure.example.test.conf": r.tlsSite("secure.example.test", "secure.example.test www.secure.example.test", "secure"),
	})
	res, err := r.in.Converge(ctx, e)
	if err != nil {
		t.Fatalf("Converge() = %v; want nil (the TLS site waits)", err)
	}
	if !slices.Equal(res.Pending, []string{"secure.example.test"}) {
		t.Errorf("pending %v; want [secure.example.test]", res.Pending)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "conf.d/secure.example.test.conf")); !os.IsNotExist(err) {
		t.Errorf("the site without a certificate was installed: %v", err)
	}
	r.waitHTTP("a.example.test", "a")

	q := queue.Open(r.cfg.QueuePath(config.CertQueue))
	names, err := q.List()
	if err != nil || len(names) != 1 {
		t.Fatalf("queues/cert holds %v, %v; want one entry", names, err)
	}
	data, _ := os.ReadFile(filepath.Join(q.Dir(), names[0]))
	cr, err := event.DecodeCertRequest(data)
	if err != nil || cr.Name != "secure.example.test" ||
		!slices.Equal(cr.Domains, []string{"secure.example.test", "www.secure.example.test"}) ||
		cr.For.Commit != e.Commit || cr.For.Deployment != "sites" {
		t.Fatalf("cert-request %+v, %v; want secure.example.test for %s", cr, err, e.Commit)
	}

	// dh-cert got the certificate and re-queues the entry.
	der := r.makeCert("secure.example.test", "secure.example.test", "www.secure.example.test")
	res, err = r.in.Converge(ctx, &cr.For)
	if err != nil || len(res.Installed) != 1 || len(res.Pending) != 0 {
		t.Fatalf("Converge() with the certificate = %+v, %v; want the TLS site installed", res, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.tlsPort),
			&tls.Config{ServerName: "www.secure.example.test", InsecureSkipVerify: true})
		if err == nil {
			got := conn.ConnectionState().PeerCertificates[0].Raw
			conn.Close()
			if string(got) != string(der) {
				t.Fatalf("nginx serves another certificate")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TLS dial: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A name the certificate does not cover: the site is installed (the
	// certificate exists) and the certificate requested again, expanded.
	e3 := r.commit(map[string]string{
		"production/secure.example.test.conf": r.tlsSite("secure.example.test", "secure.example.test www.secure.example.test new.secure.example.test", "secure"),
	})
	if res, err := r.in.Converge(ctx, e3); err != nil || len(res.Installed) != 1 {
		t.Fatalf("Converge() with a new name = %+v, %v; want the site installed", res, err)
	}
	names, _ = q.List()
	if len(names) != 2 {
		t.Fatalf("queues/cert holds %v; want a second cert-request", names)
	}
	data, _ = os.ReadFile(filepath.Join(q.Dir(), names[1]))
	if cr, err := event.DecodeCertRequest(data); err != nil || len(cr.Domains) != 3 || cr.For.Commit != e3.Commit {
		t.Errorf("second cert-request %+v, %v; want 3 domains for %s", cr, err, e3.Commit)
	}
}

func TestRefusedSites(t *testing.T) {
	r := newRig(t, all)
	outside := filepath.Join(r.dir, "outside.conf")
	r.write(outside, r.site("evil.example.test", "evil"))
	r.commit(map[string]string{
		"production/good.example.test.conf":  r.site("good.example.test", "good"),
		"production/regex.example.test.conf": r.site(`"~^(?<x>.+)\.example\.test$"`, "x"),
		"production/under.example.test.conf": r.site("_", "x"),
		"production/var.example.test.conf":   r.site("$host", "x"),
		"production/upper.example.test.conf": r.site("Upper.example.test", "x"),
		"production/none.example.test.conf":  "server {\n    listen 127.0.0.1:1;\n    return 200 \"x\";\n}\n",
		"production/semi;rm -rf.conf":        r.site("x.example.test", "x"),
		"production/UPPER.conf":              r.site("x.example.test", "x"),
		"snippets/a..bad":                    "x\n",
	})
	if err := os.Symlink(outside, filepath.Join(r.checkout, "production/link.example.test.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../outside.conf", filepath.Join(r.checkout, "snippets/escape.conf")); err != nil {
		t.Fatal(err)
	}
	e := r.commit(nil)
	res, err := r.in.Converge(ctx, e)
	if cli.ExitStatus(err) != sysexits.DataErr {
		t.Fatalf("Converge() = %v; want a DataErr", err)
	}
	for _, want := range []string{"regex.example.test.conf: line 4: server_name \"~", "regular expression",
		"under.example.test.conf: line 4: server_name \"_\": not a valid DNS name", "variables",
		"lower case", "none.example.test.conf: server block at line 1 has no server_name",
		`site name "semi;rm -rf" is not allowed`, `site name "UPPER" is not allowed`,
		"link.example.test.conf: a symbolic link: refused", "snippets/escape.conf: a symbolic link: refused", `snippet name "a..bad"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if len(res.Rejected) != 10 {
		t.Errorf("%d rejected: %q; want 10", len(res.Rejected), res.Rejected)
	}
	want := []string{"conf.d/good.example.test.conf"}
	if got := slices.Sorted(maps.Keys(r.confFiles())); !slices.Equal(got, want) {
		t.Errorf("installed %v; want %v", got, want)
	}
	r.waitHTTP("good.example.test", "good")
	if row := r.lastInstall(); row.Outcome != store.NginxPartial || len(row.Rejected) != 10 {
		t.Errorf("row %+v; want partial with 10 rejected", row)
	}

	// production itself a symbolic link out of the checkout: refused.
	r.git("rm", "-rq", "production")
	if err := os.Symlink(r.dir, filepath.Join(r.checkout, "production")); err != nil {
		t.Fatal(err)
	}
	e = r.commit(nil)
	if _, err := r.in.Converge(ctx, e); cli.ExitStatus(err) != sysexits.DataErr || !strings.Contains(err.Error(), "production is not a directory") {
		t.Errorf("Converge(production -> outside) = %v; want a DataErr", err)
	}
}

// A refused new version of an installed site keeps the installed one.
func TestRefusedChangeKeepsInstalledSite(t *testing.T) {
	r := newRig(t, all)
	e := r.commit(map[string]string{"production/a.example.test.conf": r.site("a.example.test", "a-v1")})
	if _, err := r.in.Converge(ctx, e); err != nil {
		t.Fatal(err)
	}
	e = r.commit(map[string]string{"production/a.example.test.conf": r.site("_", "a-v2")})
	if _, err := r.in.Converge(ctx, e); cli.ExitStatus(err) != sysexits.DataErr {
		t.Fatalf("Converge() = %v; want a DataErr", err)
	}
	if got := r.confFiles()["conf.d/a.example.test.conf"]; got != r.site("a.example.test", "a-v1") {
		t.Errorf("installed a = %q; want v1 kept", got)
	}
	r.waitHTTP("a.example.test", "a-v1")
}

func TestStaleEntry(t *testing.T) {
	r := newRig(t, all)
	e1 := r.commit(map[string]string{"production/a.example.test.conf": r.site("a.example.test", "a-v1")})
	r.commit(map[string]string{"production/a.example.test.conf": r.site("a.example.test", "a-v2")})
	res, err := r.in.Converge(ctx, e1)
	if err != nil || res.Outcome != store.NginxStale {
		t.Fatalf("Converge(old commit) = %+v, %v; want stale, nil", res, err)
	}
	if got := r.confFiles(); len(got) != 0 {
		t.Errorf("a stale entry installed %v", got)
	}

	// HEAD is read from a packed ref, and from a detached HEAD (what
	// dh-deploy leaves).
	r.git("pack-refs", "--all", "--prune")
	e3 := r.commit(map[string]string{"production/a.example.test.conf": r.site("a.example.test", "a-v3")})
	r.git("pack-refs", "--all", "--prune")
	if res, err := r.in.Converge(ctx, e3); err != nil || res.Outcome != store.NginxSucceeded {
		t.Errorf("Converge() with a packed ref = %+v, %v; want succeeded", res, err)
	}
	e4 := r.commit(map[string]string{"production/a.example.test.conf": r.site("a.example.test", "a-v4")})
	r.git("checkout", "-q", "--detach", e4.Commit)
	if res, err := r.in.Converge(ctx, e4); err != nil || res.Outcome != store.NginxSucceeded {
		t.Errorf("Converge() with a detached HEAD = %+v, %v; want succeeded", res, err)
	}
	r.waitHTTP("a.example.test", "a-v4")
}

// A crash after some files were written leaves the journal: the next
// start restores the previous files exactly, then converges.
func TestCrashRecovery(t *testing.T) {
	r := newRig(t, all)
	e1 := r.commit(map[string]string{
		"production/a.example.test.conf": r.site("a.example.test", "a-v1"),
		"production/b.example.test.conf": r.site("b.example.test", "b-v1"),
	})
	if _, err := r.in.Converge(ctx, e1); err != nil {
		t.Fatal(err)
	}
	before := r.confFiles()
	j := &journal{Deployment: "sites", Commit: "x", Changes: []change{
		{Path: filepath.Join(r.dir, "conf.d/a.example.test.conf"), data: []byte("half-written")},
		{Path: filepath.Join(r.dir, "conf.d/b.example.test.conf"), Remove: true},
		{Path: filepath.Join(r.dir, "conf.d/new.example.test.conf"), data: []byte("new")},
	}}
	if err := r.in.apply(j); err != nil {
		t.Fatalf("apply() = %v", err)
	}
	if maps.Equal(before, r.confFiles()) {
		t.Fatal("apply changed nothing")
	}
	// ... the process dies here; the next one starts.
	if err := New(r.cfg, r.st, Options{}).Recover(ctx); err != nil {
		t.Fatalf("Recover() = %v", err)
	}
	if got := r.confFiles(); !maps.Equal(before, got) {
		t.Errorf("after Recover the files are %q; want %q", got, before)
	}
	if _, err := os.Stat(r.in.journalPath("sites")); !os.IsNotExist(err) {
		t.Errorf("journal left: %v", err)
	}
	e2 := r.commit(map[string]string{"production/b.example.test.conf": ""})
	if res, err := r.in.Converge(ctx, e2); err != nil || len(res.Removed) != 1 {
		t.Errorf("Converge() after recovery = %+v, %v", res, err)
	}
}

func TestHandleEntries(t *testing.T) {
	r := newRig(t, all)
	e := r.commit(map[string]string{"production/a.example.test.conf": r.site("a.example.test", "a")})
	data, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.in.Handle(ctx, r.entry(data, 0)); err != nil {
		t.Fatalf("Handle(nginx-sites) = %v", err)
	}
	r.waitHTTP("a.example.test", "a")

	reload, _ := (&event.NginxReload{Reason: "renewed", RequestedAt: time.Now()}).Encode()
	if err := r.in.Handle(ctx, r.entry(reload, 0)); err != nil {
		t.Fatalf("Handle(nginx-reload) = %v", err)
	}
	if row := r.lastInstall(); row.Kind != store.NginxKindReload || row.Outcome != store.NginxSucceeded {
		t.Errorf("row %+v; want a succeeded reload", row)
	}
	// A broken configuration (not ours) is never reloaded.
	r.write(filepath.Join(r.dir, "conf.d/broken.conf"), "nonsense;\n")
	if err := r.in.Handle(ctx, r.entry(reload, 0)); cli.ExitStatus(err) != sysexits.DataErr {
		t.Errorf("Handle(nginx-reload) with a broken configuration = %v; want a DataErr", err)
	}
	r.waitHTTP("a.example.test", "a")

	other, _ := (&event.CertRequest{Name: "a.test", Domains: []string{"a.test"}, For: *e, RequestedAt: time.Now()}).Encode()
	if err := r.in.Handle(ctx, r.entry(other, 0)); cli.ExitStatus(err) != sysexits.DataErr {
		t.Errorf("Handle(cert-request) = %v; want a DataErr", err)
	}
}

// A reload that did not happen (killed between install and reload) is
// done at the next start.
func TestPendingReloadAtStart(t *testing.T) {
	r := newRig(t, all)
	r.write(filepath.Join(r.dir, "conf.d/late.conf"), r.site("late.example.test", "late"))
	if err := r.in.setReloadPending(); err != nil {
		t.Fatal(err)
	}
	r.waitHTTP("late.example.test", "none")
	if err := New(r.cfg, r.st, Options{}).Recover(ctx); err != nil {
		t.Fatalf("Recover() = %v", err)
	}
	r.waitHTTP("late.example.test", "late")
	if r.in.reloadPending() {
		t.Errorf("reload still pending after Recover")
	}
}

// TestTestOutputFile: under systemd the test command is `systemctl start
// dh-nginx-test.service`, whose own output only says that the unit failed;
// nginx -t's messages are in the unit's output file (nginx.test_output),
// and that is what the history keeps. A file the run did not write (the
// unit never started: polkit refused) is never taken for the run's.
func TestTestOutputFile(t *testing.T) {
	r := newRig(t, all)
	out := filepath.Join(r.dir, "nginx-test.log")
	// What systemctl start does with the unit: nginx -t's output goes to
	// the file (StandardOutput=truncate:), systemctl says only "failed".
	unit := `"$0" "$@" >` + out + ` 2>&1 || { echo "Job for dh-nginx-test.service failed because the control process exited with error code." >&2; exit 1; }`
	r.cfg.Nginx.TestCommand = append([]string{"/bin/sh", "-c", unit}, r.srv.TestCommand()...)
	r.cfg.Nginx.TestOutput = out
	r.in = New(r.cfg, r.st, Options{WaitLock: true})
	e1 := r.commit(map[string]string{"production/a.example.test.conf": r.site("a.example.test", "site-v1")})
	if _, err := r.in.Converge(ctx, e1); err != nil {
		t.Fatalf("Converge(good) = %v", err)
	}
	e2 := r.commit(map[string]string{"production/b.example.test.conf": "server {\n    server_name b.example.test;\n    gzip maybe;\n}\n"})
	_, err := r.in.Converge(ctx, e2)
	if cli.ExitStatus(err) != sysexits.DataErr || !strings.Contains(err.Error(), `"gzip"`) {
		t.Fatalf("Converge(broken) = %v; want a DataErr with nginx's message from %s", err, out)
	}
	if row := r.lastInstall(); !strings.Contains(row.Error, `"gzip"`) {
		t.Errorf("history: %q; want nginx's message", row.Error)
	}

	// The unit did not run: the file still holds an old run's message.
	os.WriteFile(out, []byte("nginx: [emerg] an old message\n"), 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(out, old, old)
	r.cfg.Nginx.TestCommand = []string{"/bin/sh", "-c", `echo "Failed to start dh-nginx-test.service: Access denied" >&2; exit 1`}
	_, err = r.in.Converge(ctx, e2)
	if err == nil || !strings.Contains(err.Error(), "Access denied") || strings.Contains(err.Error(), "old message") {
		t.Errorf("Converge(unit refused) = %v; want systemctl's message, not the stale file's", err)
	}
}
