package logging

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// RouteStderr points file descriptor 2 at a pipe whose lines kedge logs
// through l, and makes os.Stderr the real standard error (a duplicate of
// the old descriptor 2), for kedge's own handler and messages. It exists for
// the loggers that upstream code builds at package initialisation, before
// kedge can configure them: the apiserver's etcd client logger writes zap
// JSON to the stderr file it opened then. JSON lines become records (level,
// message and fields kept, component from the zap logger's name); other
// lines are logged as they are. Crash output (a panic that ends the
// process) is also written to the real standard error directly
// (debug.SetCrashOutput). restore puts descriptor 2 back and waits until
// every line written to the pipe is logged: call it before the process
// exits.
func RouteStderr(l func() *slog.Logger) (real *os.File, restore func(), err error) {
	realFd, err := unix.Dup(2)
	if err != nil {
		return nil, nil, fmt.Errorf("dup stderr: %w", err)
	}
	unix.CloseOnExec(realFd)
	real = os.NewFile(uintptr(realFd), "/dev/stderr")
	r, w, err := os.Pipe()
	if err != nil {
		real.Close()
		return nil, nil, err
	}
	if err := unix.Dup2(int(w.Fd()), 2); err != nil {
		real.Close()
		r.Close()
		w.Close()
		return nil, nil, fmt.Errorf("redirect stderr: %w", err)
	}
	w.Close() // descriptor 2 holds the write end now
	os.Stderr = real
	_ = debug.SetCrashOutput(real, debug.CrashOptions{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyLines(r, real, l)
	}()
	var once sync.Once
	restore = func() {
		once.Do(func() {
			// The last write end closes: the reader sees the end of the pipe.
			_ = unix.Dup2(realFd, 2)
			select {
			case <-done:
			case <-time.After(2 * time.Second):
			}
		})
	}
	return real, restore, nil
}

// copyLines logs every line of r through l(); a line that cannot be
// parsed, or read, is copied to fallback as it is.
func copyLines(r io.Reader, fallback io.Writer, l func() *slog.Logger) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Bytes()
		log := l()
		if log == nil {
			_, _ = fallback.Write(append(line, '\n'))
			continue
		}
		if !logZapJSON(log, line) {
			log.Info(string(line), "component", "stderr")
		}
	}
}

// zapLevels maps zap's level names.
var zapLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn,
	"error": slog.LevelError, "dpanic": slog.LevelError, "panic": slog.LevelError, "fatal": slog.LevelError,
}

// zapComponents names the component of a zap logger seen on stderr.
var zapComponents = map[string]string{"etcd-client": "apiserver"}

// logZapJSON logs one zap JSON line; false if it is not one.
func logZapJSON(log *slog.Logger, line []byte) bool {
	var fields map[string]any
	if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &fields) != nil {
		return false
	}
	levelName, _ := fields["level"].(string)
	msg, _ := fields["msg"].(string)
	level, ok := zapLevels[levelName]
	if !ok || msg == "" {
		return false
	}
	name, _ := fields["logger"].(string)
	component := zapComponents[name]
	if component == "" {
		component = name
	}
	for _, k := range []string{"level", "msg", "ts", "logger", "caller"} {
		delete(fields, k)
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := []slog.Attr{slog.String("component", component)}
	if name != "" && name != component {
		attrs = append(attrs, slog.String("logger", name))
	}
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, fields[k]))
	}
	log.LogAttrs(context.Background(), level, msg, attrs...)
	return true
}

// SetupProcess is SetupFormat for a node process (`kedge server`, `kedge agent`):
// it routes file descriptor 2 through kedge's logger too (RouteStderr),
// so that every line the process prints has one format. Call flush before
// the process exits. If stderr cannot be redirected, it logs why and goes
// on with Setup(os.Stderr, debug).
func SetupProcess(debug bool, format Format) (log *slog.Logger, flush func()) {
	var logger atomic.Pointer[slog.Logger]
	real, restore, err := RouteStderr(logger.Load)
	if err != nil {
		log := SetupFormat(os.Stderr, debug, format)
		log.Warn("upstream lines written to stderr keep their own format", "error", err)
		return log, func() {}
	}
	log = SetupFormat(real, debug, format)
	logger.Store(log)
	return log, restore
}
