package handlers

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/bufferd/bufferd/chain/sim"
)

// The demo pool of `bufferd dev`.
var (
	demoAsset   = sim.DemoAsset
	demoProgram = sim.DemoProgram
	demoAmounts = sim.DemoAmounts
)

// chromium finds the browser: skipped without one, unless
// BUFFERD_REQUIRE_CHROMIUM=1 (scripts/test.sh, which installs it) makes
// that a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("BUFFERD_REQUIRE_CHROMIUM") == "1" {
		t.Fatal("chromium is not installed (scripts/ensure-services.sh installs it)")
	}
	t.Skip("chromium is not installed; scripts/test.sh installs it (scripts/ensure-services.sh)")
	return ""
}

// TestStatusPageInChromium loads the status page in a real headless
// Chromium against a real server (Redis and PostgreSQL) holding the demo
// pool of `bufferd dev`: the page shows the pool, its own polling shows a
// reservation made meanwhile (the test never reloads it), the admin token
// lists the reservation, and the console stays free of errors and
// exceptions (a Content-Security-Policy violation is one). It saves a
// screenshot.
func TestStatusPageInChromium(t *testing.T) {
	path := chromium(t)
	f := newResFixture(t, 1)
	demo, _ := f.addPool(demoAsset, demoProgram, demoAmounts()...)
	base := serve(t, f.app)

	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 1100))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	// Every console message, from before the page loads.
	var (
		mu       sync.Mutex
		messages []chromedp.ConsoleMessage
	)
	consoleCtx, stopConsole := context.WithCancel(ctx)
	console := chromedp.Console(consoleCtx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range console {
			if err != nil {
				return
			}
			mu.Lock()
			messages = append(messages, m)
			mu.Unlock()
		}
	}()
	defer func() {
		stopConsole()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, m := range messages {
			if m.Type == chromedp.ConsoleError || m.IsException() {
				t.Errorf("console %s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line)
			}
		}
	}()

	row := fmt.Sprintf(`tr[data-pool="%d"]`, demo.ID)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(row)); err != nil {
		t.Fatalf("load the page: %v", err)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.TextContent(sel))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	if got := text(row + " code.asset"); got != demoAsset {
		t.Errorf("demo pool asset %q", got)
	}
	if a, l := text(row+" td.available"), text(row+" td.live"); a != "24" || l != "0" {
		t.Errorf("before the reservation: available %s, live %s", a, l)
	}
	updated := text("#updated")
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("window.notReloaded = true")); err != nil {
		t.Fatal(err)
	}

	// A reservation of 3 UTXOs, made beside the browser.
	resp, err := http.Post(base+"/v1/reservations", "application/json",
		strings.NewReader(fmt.Sprintf(`{"pool":%d,"count":3,"owner":"browser-test"}`, demo.ID)))
	if err != nil {
		t.Fatal(err)
	}
	body, err := readAll(resp)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("reserve: %d %s %v", resp.StatusCode, body, err)
	}
	res := decode[resBody](t, body)
	shown := fmt.Sprintf(`document.querySelector('%s td.live').textContent === "1" && document.querySelector('%s td.available').textContent === "21"`, row, row)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](shown, chromedp.WithPollingInterval(100*time.Millisecond),
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("the page did not show the reservation: %v (live %s, available %s)", err, text(row+" td.live"), text(row+" td.available"))
	}
	if same, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("window.notReloaded === true")); err != nil || !same {
		t.Errorf("the page was reloaded (%v)", err)
	}
	if now := text("#updated"); now == updated {
		t.Errorf("updated at %q did not move", now)
	}
	if got := text("#live-total"); got != "1" {
		t.Errorf("live total %q", got)
	}

	// The admin token lists the reservation, from this tab's sessionStorage.
	if err := chromedp.Do(ctx, chromedp.SendKeys("#token", testToken), chromedp.Click(`#token-form button[type="submit"]`),
		chromedp.WaitVisible("#admin-list")); err != nil {
		t.Fatalf("admin token: %v", err)
	}
	listed := fmt.Sprintf(`document.querySelector('#admin-list tbody').textContent.includes(%q)`, res.ID)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](listed, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the admin list lacks the reservation: %v: %s", err, text("#admin-list"))
	}
	if owner := text("#admin-list tbody"); !strings.Contains(owner, "browser-test") {
		t.Errorf("admin list without the owner: %s", owner)
	}
	kept, err := chromedp.Run(ctx, chromedp.Evaluate[string]("sessionStorage.getItem('bufferd.adminToken') + ' ' + location.href"))
	if err != nil || kept != testToken+" "+base+"/" {
		t.Errorf("token storage and URL: %q %v", kept, err)
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(t.ArtifactDir(), "status-page.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the status page: %s (%d bytes; go test -artifacts keeps it)", shot, len(png))
}
