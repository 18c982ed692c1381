package server_test

import (
	"fmt"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/chromedp/chromedp"

	"github.com/troupe-lab/troupe/internal/testenv"
	"github.com/troupe-lab/troupe/lab"
	"github.com/troupe-lab/troupe/server"
	"github.com/troupe-lab/troupe/workers"
	"github.com/troupe-lab/troupe/workers/workerpb"
)

type hubStub []workers.WorkerStatus

func (h hubStub) Workers() ([]workers.WorkerStatus, error) { return h, nil }

// TestBrowserWorkers: the devices page lists the workers, online or
// offline, with their boards.
func TestBrowserWorkers(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Missing(t, fmt.Sprintf("no %s (apt-get install chromium chromium-driver; make deps does): %v", chromiumPath, err))
	}
	l, err := lab.Parse("browser-lab.toml", []byte(browserLab))
	if err != nil {
		t.Fatalf("parse lab: %v", err)
	}
	srv, err := server.New(server.Config{Lab: l, Data: t.TempDir()})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	defer srv.Close()
	ts := httptest.NewServer(srv.WithWorkers(hubStub{
		{Name: "rack1", Connected: true, Address: "127.0.0.1:7001", Boards: []string{"r1-a", "r1-b"}},
		{Name: "rack2", Connected: false, Address: "127.0.0.1:7002", Boards: []string{"r2-a"}},
	}))
	defer ts.Close()
	ctx, exceptions := startBrowser(t)
	within(t, ctx, 10*time.Second, "open the devices page",
		chromedp.Navigate(ts.URL+"/#/devices"),
		chromedp.WaitVisible(chromedp.CSS("#devices")))
	poll[bool](t, ctx, 10*time.Second, "both workers, their connection and boards",
		`(() => { const a = document.querySelector('#workers tr[data-name="rack1"]'), b = document.querySelector('#workers tr[data-name="rack2"]');
			return !!a && !!b && a.textContent.includes('online') && a.textContent.includes('r1-a, r1-b')
				&& b.textContent.includes('offline') && !!b.querySelector('.conn-offline'); })()`)
	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("the page threw: %v", ex)
	}
}

// TestBrowserWorkerBoardOffline: a worker's board is listed among the
// devices with its worker, online; once the worker is lost the page shows
// it offline, still with its worker and its health unchanged (not bad).
func TestBrowserWorkerBoardOffline(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Missing(t, fmt.Sprintf("no %s (apt-get install chromium chromium-driver; make deps does): %v", chromiumPath, err))
	}
	l, err := lab.Parse("browser-lab.toml", []byte(browserLab))
	if err != nil {
		t.Fatalf("parse lab: %v", err)
	}
	srv, err := server.New(server.Config{Lab: l, Data: t.TempDir(), Workers: true})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	defer srv.Close()
	srv.WorkerJoined("rack2", actor.NewPID("127.0.0.1:9", "boards"),
		[]*workerpb.Board{{Name: "r2-a", DeviceType: "sim", Tags: []string{"rack2"}, Health: "good"}})
	ts := httptest.NewServer(srv.WithWorkers(hubStub{{Name: "rack2", Connected: true, Address: "127.0.0.1:9", Boards: []string{"r2-a"}}}))
	defer ts.Close()
	ctx, exceptions := startBrowser(t)
	within(t, ctx, 10*time.Second, "open the devices page",
		chromedp.Navigate(ts.URL+"/#/devices"),
		chromedp.WaitVisible(chromedp.CSS("#devices")))
	const row = `document.querySelector('#devices tr[data-name="r2-a"]')`
	poll[bool](t, ctx, 10*time.Second, "the worker's board, online",
		`(() => { const r = `+row+`; return !!r && r.textContent.includes('worker rack2') && !!r.querySelector('.conn-online'); })()`)
	srv.WorkerLost("rack2")
	poll[bool](t, ctx, 15*time.Second, "the worker's board, offline with its worker, health unchanged",
		`(() => { const r = `+row+`; return !!r && r.textContent.includes('worker rack2') && !!r.querySelector('.conn-offline')
			&& !r.querySelector('.conn-online') && !!r.querySelector('.health-good'); })()`)
	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("the page threw: %v", ex)
	}
}
