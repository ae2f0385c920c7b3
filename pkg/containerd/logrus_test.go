package containerd

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/kedge-io/kedge/pkg/hostinfo"
)

func TestRouteLogs(t *testing.T) {
	rec := &logRecorder{}
	fatal := make(chan error, 1)
	routeLogs(slog.New(rec), false, fatal)

	log.L.WithField("id", "x").Info("loading plugin")
	log.L.WithError(errors.New("boom")).Warn("failed to load plugin")
	log.L.Warn("failed check for fsverity support")
	if n := rec.count("loading plugin"); n != 0 {
		t.Errorf("info line passed without debug:\n%s", rec)
	}
	if n := rec.count("failed to load plugin", "error=boom"); n != 1 {
		t.Errorf("warning not forwarded with its error:\n%s", rec)
	}

	// Fatal ends the goroutine that logs it and reports, instead of exiting.
	ended := make(chan bool)
	go func() {
		defer func() { ended <- true }()
		log.L.Fatal("serve failure")
		t.Error("Fatal returned")
	}()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("goroutine that logged Fatal still runs")
	}
	select {
	case err := <-fatal:
		if !strings.Contains(err.Error(), "fatal") {
			t.Errorf("fatal error = %v", err)
		}
	default:
		t.Error("Fatal not reported")
	}
	if rec.count("serve failure") != 1 {
		t.Errorf("fatal line not logged:\n%s", rec)
	}

	routeLogs(slog.New(rec), true, fatal)
	log.L.Info("debug mode line")
	if rec.count("debug mode line") != 1 {
		t.Errorf("info line dropped with debug:\n%s", rec)
	}
	if logrus.GetLevel() != logrus.InfoLevel {
		t.Errorf("logrus level %v with debug, want info (CRI then sets klog -v=2, as kedge's debug)", logrus.GetLevel())
	}
}

// TestReadyReportsFailure: a containerd that cannot load its plugins fails
// Ready (and Err) with the reason, rather than hanging.
func TestReadyReportsFailure(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	env := newTestEnv(t)
	cfg := env.cfg
	cfg.Host = hostinfo.Host{CanRaiseOOMPriority: true}
	// The metadata plugin's directory is a file: bolt cannot open its database.
	mustf(t, os.MkdirAll(cfg.Root, 0o700), "root")
	mustf(t, os.WriteFile(filepath.Join(cfg.Root, "io.containerd.metadata.v1.bolt"), nil, 0o600), "blocker")
	c := New(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mustf(t, c.Start(ctx), "Start")
	defer func() { mustf(t, c.Stop(context.Background()), "Stop") }()
	err := c.Ready(ctx)
	if err == nil || !strings.Contains(err.Error(), "containerd:") {
		t.Fatalf("Ready = %v, want containerd's load error", err)
	}
	t.Logf("Ready: %v", err)
	select {
	case err := <-c.Err():
		t.Logf("Err: %v", err)
	case <-time.After(5 * time.Second):
		t.Error("failure not reported on Err")
	}
}
