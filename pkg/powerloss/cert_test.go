package powerloss_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/cert/certtest"
	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/crashfs"
	"github.com/dh-deployer/dh-deployer/pkg/event"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store/storetest"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// TestCertPowerLoss fills queues/cert (durably, as dh-nginx would) with
// cert-requests and cuts the power under dh-cert at a random moment,
// round after round, while it runs a real certbot against a local ACME
// server (pkg/cert/certtest). A good request's certificate is obtained
// (or kept: it was issued once before the rounds), its site install (an
// nginx-sites entry) published to queues/nginx and the request removed;
// a request with a bad certificate name is moved to queues/cert/failed/
// with its sidecar. After each cut every good request is still in
// queues/cert or has its hand-off in queues/nginx, never neither, and
// every bad one is in queues/cert or in failed/ with its sidecar. At the
// end dh-cert drains queues/cert: every good request is handed off (at
// least once), every bad one failed.
func TestCertPowerLoss(t *testing.T) {
	bin := testenv.Build(t, "dh-cert")
	url := storetest.NewMigrated(t)
	ca := certtest.Start(t)
	ca.ServeWebroot(t)
	fs := crashfs.Mount(t)
	spool := makeQueues(t, fs, "cert", "nginx")
	certq := filepath.Join(spool, "cert")

	dir := t.TempDir() // state_dir: not on the crash file system, like certbot's own directories
	cfgFile := filepath.Join(dir, "config.toml")
	doc := fmt.Sprintf(`queue_dir = %q
state_dir = %q
database_url = %q

[nginx]
cert_dir = %q

[cert]
command = %s
webroot = %q
server = %q
`, spool, filepath.Join(dir, "state"), url, ca.Live, config.TOMLArray(ca.Command(t)), ca.Webroot, ca.Directory)
	if err := os.WriteFile(cfgFile, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}

	// The certificate is issued once before the cuts: certbot killed in
	// the middle of an ACME order could leave its own state half made,
	// which is certbot's business, not the queues'. Then every request
	// runs certbot, which keeps the certificate: the second warm-up
	// measures how long a request takes to drain.
	var perRequest time.Duration
	for _, delivery := range []string{"warm-up", "warm-up-kept"} {
		publishDurably(t, certq, [][]byte{certRequest(t, delivery, false)})
		began := time.Now()
		if out, err := exec.Command(bin, "-c", cfgFile, "run", "--once").CombinedOutput(); err != nil {
			t.Fatalf("dh-cert run --once before the cuts = %v\n%s", err, out)
		}
		perRequest = time.Since(began)
	}

	// Every round cuts dh-cert at most least+spread after its start
	// (spread covers two requests, so that the cuts fall anywhere in
	// handling them however busy the machine is). The requests it leaves
	// queued wait for the recovery after the last cut, which runs
	// certbot for each (perRequest): a round starts only if it and that
	// recovery still fit in DH_CRASH_TIME, and adds requests only when
	// fewer than perRound wait, so that the cuts, not the recovery, take
	// the time.
	least, spread := 100*time.Millisecond, max(3*time.Second, 2*perRequest)
	const perRound = 3        // every third request has a bad name
	good := map[string]bool{} // deliveries of the good requests, not yet counted lost
	bad := map[string]bool{}  // entry names of the bad requests, not yet counted lost
	c := tally{stage: "dh-cert"}
	b := bounds(t)
	t.Logf("a request takes %v to drain", perRequest.Round(time.Millisecond))
	for queued := 0; b.another(c.rounds, least+spread+time.Duration(topUp(queued, perRound))*perRequest); {
		if queued < perRound {
			var batch [][]byte
			var deliveries []string
			for i := range perRound {
				delivery := fmt.Sprintf("cut-%03d-%04d", c.rounds, i)
				batch = append(batch, certRequest(t, delivery, i%3 == 2))
				deliveries = append(deliveries, delivery)
			}
			for i, name := range publishDurably(t, certq, batch) {
				if i%3 == 2 {
					bad[name] = true
				} else {
					good[deliveries[i]] = true
				}
			}
			c.acked += perRound
		}

		runAndCut(t, fs, least, spread, bin, "-c", cfgFile, "run")
		c.rounds++
		queued = checkCerts(t, &c, spool, good, bad, false)
	}

	out, err := exec.Command(bin, "-c", cfgFile, "run", "--once").CombinedOutput()
	if err != nil {
		t.Errorf("dh-cert run --once after the last cut = %v\n%s", err, out)
	}
	if left, _ := queue.Open(certq).List(); len(left) > 0 {
		t.Errorf("queues/cert holds %d entries after dh-cert run --once; want none", len(left))
	}
	checkCerts(t, &c, spool, good, bad, true)
	c.report(t, fs, b)
}

// topUp is how many requests are queued after a round adds perRound to
// the queued ones if fewer than perRound are queued.
func topUp(queued, perRound int) int {
	if queued < perRound {
		return queued + perRound
	}
	return queued
}

// certRequest is a cert-request for site.test whose site install is
// delivery's; with bad, its certificate name is one dh-cert refuses.
func certRequest(t *testing.T, delivery string, bad bool) []byte {
	t.Helper()
	name := "site.test"
	if bad {
		name = "badname.test"
	}
	e := event.CertRequest{Name: name, Domains: []string{"site.test"}, RequestedAt: time.Now(),
		For: event.NginxSites{Deployment: "sites", Commit: strings.Repeat("ab", 20), Delivery: delivery, RequestedAt: time.Now()}}
	data, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if bad {
		data = bytes.Replace(data, []byte(`"badname.test"`), []byte(`"bad name"`), 1)
	}
	return data
}

// checkCerts counts, after a cut, the good requests neither in
// queues/cert nor handed off to queues/nginx and the bad ones neither in
// queues/cert nor in its failed/ (lost), and the entries that do not
// decode, the good requests that failed and the failed entries without
// their sidecar (corrupt); once final, also the requests still queued.
// It forgets the requests it counted lost, and returns how many entries
// queues/cert holds.
func checkCerts(t *testing.T, c *tally, spool string, good, bad map[string]bool, final bool) int {
	t.Helper()
	certq, nginxq := queue.Open(filepath.Join(spool, "cert")), queue.Open(filepath.Join(spool, "nginx"))
	var corrupt, lost []string
	queued := map[string]bool{} // good deliveries and bad entry names in queues/cert
	inCert := read(t, certq)
	for _, name := range inCert.names {
		data := inCert.data[name]
		switch e, err := event.DecodeCertRequest(data); {
		case err == nil:
			queued[e.For.Delivery] = true
		case bad[name]:
			queued[name] = true
		default:
			corrupt = append(corrupt, fmt.Sprintf("cert/%s (%d bytes): %v", name, len(data), err))
		}
	}
	failed := map[string]bool{}
	fnames, err := certq.Failed()
	if err != nil {
		t.Fatalf("after the cut: %v", err)
	}
	for _, name := range fnames {
		why, err := certq.ReadFailure(name)
		switch {
		case !bad[name]:
			corrupt = append(corrupt, "cert/failed/"+name+": a good request failed: "+why.Error)
		case err != nil || why.Entry != name:
			corrupt = append(corrupt, fmt.Sprintf("cert/failed/%s: sidecar %+v, %v", name, why, err))
		default:
			failed[name] = true
		}
	}
	handoffs := map[string]int{}
	inNginx := read(t, nginxq)
	for _, name := range inNginx.names {
		data := inNginx.data[name]
		e, err := event.DecodeNginxSites(data)
		if err != nil {
			corrupt = append(corrupt, fmt.Sprintf("nginx/%s (%d bytes): %v", name, len(data), err))
			continue
		}
		handoffs[e.Delivery]++
	}

	var done int
	for delivery := range good {
		switch {
		case handoffs[delivery] > 0:
			done++
		case final || !queued[delivery]:
			lost = append(lost, delivery+": neither in queues/cert nor handed off to queues/nginx")
			delete(good, delivery)
		}
	}
	for name := range bad {
		switch {
		case failed[name]:
			done++
		case final || !queued[name]:
			lost = append(lost, name+" (bad name): neither in queues/cert nor in its failed/")
			delete(bad, name)
		}
	}
	t.Logf("round %d: %d of %d requests handed off or failed", c.rounds, done, len(good)+len(bad))
	c.lost += len(lost)
	c.corrupt += len(corrupt)
	if len(lost) > 0 {
		t.Errorf("round %d: %d requests lost:\n%s", c.rounds, len(lost), some(lost, 5))
	}
	if len(corrupt) > 0 {
		t.Errorf("round %d: %d corrupt or wrongly failed entries:\n%s", c.rounds, len(corrupt), some(corrupt, 5))
	}
	return len(inCert.names)
}
