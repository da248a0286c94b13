package powerloss_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/crashfs"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/nginx/nginxtest"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// TestNginxPowerLoss fills queues/nginx (durably, as dh-cert and
// dh-deploy would) and cuts the power under dh-nginx at a random moment,
// round after round, while it tests and reloads a private nginx
// (pkg/nginx/nginxtest). Each round queues three kinds of entries:
//
//   - nginx-reload entries (as dh-cert queues after renewals): the
//     reload command notes each reload in a file off the crash file
//     system; a round that consumed any must have reloaded nginx;
//   - nginx-sites entries of a verified commit whose HTTPS site has no
//     certificate yet: dh-nginx publishes a cert-request to queues/cert
//     and removes the entry, so each is still queued or its cert-request
//     is in queues/cert, never neither;
//   - nginx-sites entries of a deployment that is not configured: moved
//     to queues/nginx/failed/ with their sidecar, so each is still queued
//     or failed with its sidecar, never neither.
//
// After each cut every entry is whole, nothing else failed, and the
// queues/cert entries decode. At the end dh-nginx drains queues/nginx.
func TestNginxPowerLoss(t *testing.T) {
	bin := testenv.Build(t, "dh-nginx")
	url := storetest.NewMigrated(t)
	st, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := nginxtest.Start(t, nginxtest.Options{})
	fs := crashfs.Mount(t)
	spool := makeQueues(t, fs, "nginx", "cert")
	nginxq := filepath.Join(spool, "nginx")

	dir := t.TempDir() // state_dir, the checkout and the reload trace: not on the crash file system
	certDir := filepath.Join(dir, "certs")
	trace := filepath.Join(dir, "reloads")
	reload := append([]string{"/bin/sh", "-c", `echo reload >> "$0" && exec "$@"`, trace}, srv.ReloadCommand()...)
	checkout := filepath.Join(dir, "checkout")
	site := fmt.Sprintf("server {\n    listen 127.0.0.1:%d ssl;\n    server_name tls.test;\n"+
		"    ssl_certificate %s/tls.test/fullchain.pem;\n    ssl_certificate_key %[2]s/tls.test/privkey.pem;\n"+
		"    return 200 \"tls\";\n}\n", testenv.FreePort(t), certDir)
	if err := os.MkdirAll(filepath.Join(checkout, "production"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(checkout, "production", "tls.test.conf"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, checkout, "init", "-q", "-b", "main")
	testenv.Git(t, checkout, "add", "-A")
	testenv.Git(t, checkout, "commit", "-q", "-m", "an HTTPS site")
	commit := testenv.Git(t, checkout, "rev-parse", "HEAD")
	// dh-nginx installs only a commit the deployment's runs verified.
	run, err := st.InsertRun(context.Background(), store.Run{Delivery: "verified", Deployment: "sites",
		Ref: "refs/heads/main", Commit: commit, State: store.RunRunning, StartedAt: time.Now()})
	if err == nil {
		err = st.FinishRun(context.Background(), run, store.RunResult{State: store.RunSucceeded})
	}
	if err != nil {
		t.Fatal(err)
	}

	cfgFile := filepath.Join(dir, "config.toml")
	doc := fmt.Sprintf(`queue_dir = %q
state_dir = %q
database_url = %q

[nginx]
conf_dir = %q
snippets_dir = %q
cert_dir = %q
test_command = %s
reload_command = %s

[deployments.sites]
kind = "nginx"
repository = "crash/sites"
branches = ["main"]
path = %q
user = "daemon"
sites = [{ rule = "include", select = ["*"] }]
domains = ["*.test"]
`, spool, filepath.Join(dir, "state"), url, srv.ConfDir, srv.SnippetsDir, certDir,
		config.TOMLArray(srv.TestCommand()), config.TOMLArray(reload), checkout)
	if err := os.WriteFile(cfgFile, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}

	const perRound = 60 // a third of each kind
	w := nginxWant{reloads: map[string]bool{}, sites: map[string]bool{}, refused: map[string]bool{}}
	c := tally{stage: "dh-nginx"}
	b := bounds(t)
	for b.another(c.rounds, 0) {
		var batch [][]byte
		var deliveries []string
		for i := range perRound {
			var e interface{ Encode() ([]byte, error) }
			delivery := fmt.Sprintf("cut-%03d-%04d", c.rounds, i)
			switch i % 3 {
			case 0:
				e = &event.NginxReload{Reason: "cut " + delivery, RequestedAt: time.Now()}
			case 1:
				e = &event.NginxSites{Deployment: "sites", Commit: commit, Delivery: delivery, RunID: run, RequestedAt: time.Now()}
			case 2:
				e = &event.NginxSites{Deployment: "gone", Commit: commit, Delivery: delivery, RequestedAt: time.Now()}
			}
			data, err := e.Encode()
			if err != nil {
				t.Fatal(err)
			}
			batch = append(batch, data)
			deliveries = append(deliveries, delivery)
		}
		for i, name := range publishDurably(t, nginxq, batch) {
			switch i % 3 {
			case 0:
				w.reloads[name] = true
			case 1:
				w.sites[deliveries[i]] = true
			case 2:
				w.refused[name] = true
			}
		}
		c.acked += perRound
		os.Remove(trace)

		runAndCut(t, fs, 100*time.Millisecond, 900*time.Millisecond, bin, "-c", cfgFile, "run")
		c.rounds++
		checkNginx(t, &c, spool, &w, trace, false)
	}

	out, err := exec.Command(bin, "-c", cfgFile, "run", "--once").CombinedOutput()
	if err != nil {
		t.Errorf("dh-nginx run --once after the last cut = %v\n%s", err, out)
	}
	if left, _ := queue.Open(nginxq).List(); len(left) > 0 {
		t.Errorf("queues/nginx holds %d entries after dh-nginx run --once; want none", len(left))
	}
	checkNginx(t, &c, spool, &w, "", true)
	c.report(t, fs, b)
}

// nginxWant is what TestNginxPowerLoss queued and has not yet found
// consumed correctly or lost.
type nginxWant struct {
	reloads map[string]bool // nginx-reload entry names still queued before the round
	sites   map[string]bool // deliveries of the nginx-sites entries that need a certificate
	refused map[string]bool // nginx-sites entry names of the unknown deployment
}

// checkNginx counts, after a cut, the entries that do not decode and
// those dh-nginx failed but should not have, or failed without their
// sidecar (corrupt), and lost: the nginx-reload entries consumed in a
// round without a reload (trace; "" skips that check), the nginx-sites
// entries neither queued nor with a cert-request in queues/cert, the
// refused ones neither queued nor in failed/. Once final, also what is
// still queued.
func checkNginx(t *testing.T, c *tally, spool string, w *nginxWant, trace string, final bool) {
	t.Helper()
	nginxq, certq := queue.Open(filepath.Join(spool, "nginx")), queue.Open(filepath.Join(spool, "cert"))
	var bad, lost []string
	unreloaded := 0
	queued := map[string]bool{} // entry names, and deliveries of the sites entries
	inNginx := read(t, nginxq)
	for _, name := range inNginx.names {
		data := inNginx.data[name]
		queued[name] = true
		if s, err := event.DecodeNginxSites(data); err == nil {
			queued[s.Delivery] = true
		} else if _, rerr := event.DecodeNginxReload(data); rerr != nil {
			bad = append(bad, fmt.Sprintf("%s (%d bytes): %v", name, len(data), err))
		}
	}
	removeCorrupt(t, nginxq.Dir(), bad)
	failed := map[string]bool{}
	fnames, _ := nginxq.Failed()
	for _, name := range fnames {
		why, err := nginxq.ReadFailure(name)
		switch {
		case !w.refused[name]:
			bad = append(bad, "nginx/failed/"+name+": "+why.Error)
		case err != nil || why.Entry != name:
			bad = append(bad, fmt.Sprintf("nginx/failed/%s: sidecar %+v, %v", name, why, err))
		default:
			failed[name] = true
		}
	}
	requested := map[string]bool{}
	inCert := read(t, certq)
	for _, name := range inCert.names {
		data := inCert.data[name]
		e, err := event.DecodeCertRequest(data)
		if err != nil {
			bad = append(bad, fmt.Sprintf("cert/%s (%d bytes): %v", name, len(data), err))
			continue
		}
		requested[e.For.Delivery] = true
	}

	var reloaded int
	for name := range w.reloads {
		if !queued[name] {
			reloaded++
			delete(w.reloads, name)
		} else if final {
			lost = append(lost, name+": nginx-reload still queued")
		}
	}
	if b, _ := os.ReadFile(trace); trace != "" && reloaded > 0 && !strings.Contains(string(b), "reload\n") {
		lost = append(lost, fmt.Sprintf("%d nginx-reload entries consumed without a reload", reloaded))
		unreloaded = reloaded - 1 // one line for them all
	}
	var done int
	for delivery := range w.sites {
		switch {
		case !queued[delivery] && requested[delivery]:
			done++
		case final || !queued[delivery]:
			lost = append(lost, delivery+": nginx-sites neither queued nor its cert-request in queues/cert")
			delete(w.sites, delivery)
		}
	}
	for name := range w.refused {
		switch {
		case failed[name]:
			done++
		case final || !queued[name]:
			lost = append(lost, name+": refused nginx-sites neither queued nor in failed/")
			delete(w.refused, name)
		}
	}
	t.Logf("round %d: %d nginx-reload entries consumed, %d nginx-sites entries handled", c.rounds, reloaded, done)
	c.corrupt += len(bad)
	c.lost += len(lost) + unreloaded
	if len(bad) > 0 {
		t.Errorf("round %d: %d corrupt or wrongly failed entries:\n%s", c.rounds, len(bad), some(bad, 5))
	}
	if len(lost) > 0 {
		t.Errorf("round %d: %d lost:\n%s", c.rounds, len(lost), some(lost, 5))
	}
}
