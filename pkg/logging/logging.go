// Package logging sets up kedge's one structured logger and routes the
// upstream components' klog output into it.
//
//	log := logging.Setup(os.Stderr, false)
//	log.Info("starting", "component", "etcd")
//	ctx = logging.WithComponent(ctx, log, "apiserver") // klog.FromContext(ctx) now carries component=apiserver
package logging

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"k8s.io/klog/v2"
)

// Setup returns kedge's logger writing text lines to w and routes klog (the
// logger of every embedded Kubernetes component) into it. Without debug,
// upstream components log errors only, so that kedge's own lines stay
// readable; with debug, upstream info lines up to klog verbosity 2 are shown
// too. The standard library's log package (CoreDNS) goes there too, and
// start-up noise that needs no action is demoted to debug (noise.go). Call
// it once, before any component starts.
func Setup(w io.Writer, debug bool) *slog.Logger { return SetupFormat(w, debug, Text) }

// Format is how log lines are written (--log-format).
type Format string

// The formats: slog's text (key=value) and JSON handlers.
const (
	Text Format = "text"
	JSON Format = "json"
)

// ParseFormat reads --log-format.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Text, JSON:
		return f, nil
	}
	return "", fmt.Errorf("--log-format %q: want text or json", s)
}

// SetupFormat is Setup writing lines in format.
func SetupFormat(w io.Writer, debug bool, format Format) *slog.Logger {
	level := slog.LevelInfo
	upstream := slog.LevelError
	verbosity := 0
	if debug {
		level = slog.LevelDebug
		upstream = slog.Level(-2)
		verbosity = 2
	}
	opts := &slog.HandlerOptions{Level: min(level, upstream)}
	var base slog.Handler = slog.NewTextHandler(w, opts)
	if format == JSON {
		base = slog.NewJSONHandler(w, opts)
	}
	base = quietHandler{Handler: base, until: time.Now().Add(startupWindow), now: time.Now}
	log := slog.New(levelHandler{Handler: base, min: level})
	routeStdlog(log)

	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("v", strconv.Itoa(verbosity))
	_ = fs.Set("logtostderr", "false")
	klog.SetSlogLogger(slog.New(levelHandler{Handler: base, min: upstream}))
	return log
}

// WithComponent returns a context whose klog logger (klog.FromContext) adds
// component=name to every line, and the matching slog logger.
func WithComponent(ctx context.Context, log *slog.Logger, name string) (context.Context, *slog.Logger) {
	l := log.With("component", name)
	upstream := klog.FromContext(ctx).WithValues("component", name)
	return klog.NewContext(ctx, upstream), l
}

// levelHandler drops records below min; it lets two loggers with different
// thresholds share one underlying handler.
type levelHandler struct {
	slog.Handler
	min slog.Level
}

func (h levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h levelHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return levelHandler{Handler: h.Handler.WithAttrs(a), min: h.min}
}

func (h levelHandler) WithGroup(name string) slog.Handler {
	return levelHandler{Handler: h.Handler.WithGroup(name), min: h.min}
}
