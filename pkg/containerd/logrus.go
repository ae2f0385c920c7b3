package containerd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"

	"github.com/sirupsen/logrus"
)

// routeLogs sends containerd's logs (logrus, the logger behind
// github.com/containerd/log) into log. logrus is process-wide upstream
// state: the last containerd started owns it. Without debug only warnings
// and errors pass; with debug, info too. (containerd's CRI plugin derives
// klog's verbosity from this level: warn leaves kedge's klog settings alone,
// info sets -v=2, the same as kedge's debug.)
//
// A Fatal line (containerd calls it where a serving goroutine cannot go on)
// does not exit the process: it is sent to fatal and the goroutine that
// logged it ends, so that kedge shuts down in order.
func routeLogs(log *slog.Logger, debug bool, fatal chan<- error) {
	l := logrus.StandardLogger()
	l.SetOutput(io.Discard)
	l.SetLevel(logrus.WarnLevel)
	if debug {
		l.SetLevel(logrus.InfoLevel)
	}
	hooks := logrus.LevelHooks{}
	hooks.Add(slogHook{log: log})
	l.ReplaceHooks(hooks)
	l.ExitFunc = func(int) {
		select {
		case fatal <- fmt.Errorf("containerd: fatal error (see the log line above)"):
		default:
		}
		runtime.Goexit()
	}
}

// slogHook forwards logrus entries to a slog logger.
type slogHook struct{ log *slog.Logger }

func (slogHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h slogHook) Fire(e *logrus.Entry) error {
	level := slogLevel(e.Level)
	if level == slog.LevelWarn && benign(e.Message) {
		level = slog.LevelDebug
	}
	ctx := e.Context
	if ctx == nil {
		ctx = context.Background()
	}
	if !h.log.Enabled(ctx, level) {
		return nil
	}
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		v := e.Data[k]
		if err, ok := v.(error); ok {
			v = err.Error()
		}
		attrs = append(attrs, slog.Any(k, v))
	}
	h.log.LogAttrs(ctx, level, e.Message, attrs...)
	return nil
}

// benign reports whether a containerd warning is one every start on an
// ordinary host logs, which kedge shows at debug level only.
func benign(msg string) bool {
	switch msg {
	case "failed check for fsverity support": // the content store, on filesystems without verity
		return true
	}
	return false
}

func slogLevel(l logrus.Level) slog.Level {
	switch l {
	case logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel:
		return slog.LevelError
	case logrus.WarnLevel:
		return slog.LevelWarn
	case logrus.InfoLevel:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}
