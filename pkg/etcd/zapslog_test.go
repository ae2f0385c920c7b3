package etcd

import (
	"bytes"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestSlowDiskWarningsOncePerPeriod(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	th := newThrottle(time.Minute)
	th.now = func() time.Time { return now }
	core := &slogCore{log: slog.New(slog.NewTextHandler(&buf, nil)), level: zapcore.WarnLevel,
		closing: &atomic.Bool{}, removed: &atomic.Bool{}, throttle: th}
	lg := zap.New(core)
	for range 100 { // a slow disk: one warning per write
		lg.Warn("slow fdatasync", zap.Duration("took", 2*time.Second))
		lg.Warn("apply request took too long")
		now = now.Add(100 * time.Millisecond) // 10 s in all
	}
	lg.Warn("some other warning")
	lg.Warn("some other warning")
	if n := strings.Count(buf.String(), "slow fdatasync"); n != 1 {
		t.Fatalf("%d slow fdatasync lines in 10 s, want 1:\n%s", n, buf.String())
	}
	if n := strings.Count(buf.String(), "some other warning"); n != 2 {
		t.Fatalf("other warnings throttled: %d lines", n)
	}
	now = now.Add(time.Minute)
	buf.Reset()
	lg.Warn("slow fdatasync")
	if !strings.Contains(buf.String(), "repeated_since_last_logged=99") {
		t.Fatalf("the next line does not count the 99 held back: %s", buf.String())
	}
}
