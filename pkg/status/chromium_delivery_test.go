package status_test

import (
	"context"
	"image"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/status"
	"github.com/dh-deployer/dh-deployer/pkg/status/statustest"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// TestChromiumDelivery renders a delivery's page in a real headless
// Chromium: a screenshot showing the red of its failed run and the blue
// of its running one (kept in DH_DELIVERY_SCREENSHOT if set, and in
// /tmp when the test fails), and the DOM, with each run's row, its log
// link and the running run's live link, and no script; the live link
// shows a line written while Chromium reads it, and its load ends when
// the run does.
func TestChromiumDelivery(t *testing.T) {
	bin := testenv.Command(t, "chromium")
	in := statustest.New(t, "")
	story := in.Story(t)
	srv := httptest.NewServer(handler(in, ""))
	defer srv.Close()
	url := srv.URL + status.DeliveryURL(story.GUID)

	shot := filepath.Join(t.TempDir(), "delivery.png")
	chromium(t, bin, "--window-size=1280,1000", "--screenshot="+shot, url)
	colours := map[string][3]uint8{"failed": {0xcf, 0x22, 0x2e}, "running": {0x09, 0x69, 0xda}}
	seen := badgePixels(t, shot, colours)
	for name := range colours {
		if seen[name] < 50 {
			t.Errorf("screenshot: %d pixels of the %s badge colour; want a %s badge", seen[name], name, name)
		}
	}
	keep := os.Getenv("DH_DELIVERY_SCREENSHOT") // to look at it: DH_DELIVERY_SCREENSHOT=/tmp/delivery.png
	if keep == "" && t.Failed() {
		keep = filepath.Join(os.TempDir(), "dh-delivery-"+story.GUID+".png")
	}
	if keep != "" {
		if data, err := os.ReadFile(shot); err != nil || os.WriteFile(keep, data, 0o644) != nil {
			t.Errorf("keep the screenshot in %s: failed", keep)
		} else {
			t.Logf("screenshot kept at %s", keep)
		}
	}

	dom := string(chromium(t, bin, "--dump-dom", url))
	for _, want := range []string{
		"<title>delivery " + story.GUID + "</title>",
		`<tr data-run="` + itoa(story.Failed) + `" data-deployment="api">`,
		`<tr data-run="` + itoa(story.Running) + `" data-deployment="docs">`,
		`<a class="log" href="` + status.LogURL("api", story.Failed) + `">log</a>`,
		`<a class="follow" href="` + status.LogURL("docs", story.Running) + `?follow=1">live</a>`,
		"&lt;script&gt;alert(\"x\")&lt;/script&gt;", // shown as text
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("chromium's DOM: no %q", want)
		}
	}
	checkNoScript(t, dom)
	// The live link streams the running log: Chromium shows what is
	// written while it loads, and its page is complete once the run ends.
	go func() {
		time.Sleep(time.Second)
		if f, err := os.OpenFile(story.LogPath, os.O_WRONLY|os.O_APPEND, 0); err == nil {
			f.WriteString("written while Chromium reads\n")
			f.Close()
		}
		in.Store.FinishRun(context.Background(), story.Running, store.RunResult{State: store.RunSucceeded, ExitCode: new(0)})
	}()
	if live := string(chromium(t, bin, "--dump-dom", srv.URL+status.LogURL("docs", story.Running)+"?follow=1")); !strings.Contains(live, "step 1/1: build") ||
		!strings.Contains(live, "written while Chromium reads") {
		t.Errorf("chromium at the live log: %q; want its first line and the one written while it read", live)
	}

	// The failed run's log link leads to its log.
	if logDOM := string(chromium(t, bin, "--dump-dom", srv.URL+status.LogURL("api", story.Failed))); !strings.Contains(logDOM, "ERR_PNPM story failed") {
		t.Errorf("chromium at the failed run's log: no log text in %q", logDOM)
	}
}

// badgePixels counts the pixels of a PNG near each of colours.
func badgePixels(t *testing.T, path string, colours map[string][3]uint8) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v; want a PNG", path, err)
	}
	seen := map[string]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			c := [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8)}
			for name, want := range colours {
				if near(c, want) {
					seen[name]++
				}
			}
		}
	}
	return seen
}

// checkNoScript fails if Chromium's DOM holds a script element, and shows
// the DOM when the test failed.
func checkNoScript(t *testing.T, dom string) {
	t.Helper()
	if n := strings.Count(dom, "<script"); n > 0 {
		t.Errorf("chromium's DOM holds %d script elements; want none", n)
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}
