package logging

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// routeStdlog sends the standard library's log package (CoreDNS's plugins
// log through it, as "[INFO] plugin/kubernetes: …") into l, with the
// level its prefix names and component=coredns for CoreDNS's plugins.
func routeStdlog(l *slog.Logger) {
	log.SetFlags(0)
	log.SetPrefix("")
	log.SetOutput(stdlogWriter{log: l})
}

// stdlogWriter turns each line the log package writes into a record.
type stdlogWriter struct{ log *slog.Logger }

// Write logs p (one or more lines) and never fails.
func (w stdlogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		level, component, msg := parseStdlogLine(string(line))
		w.log.Log(context.Background(), level, msg, "component", component)
	}
	return len(p), nil
}

// stdlogLevels are the prefixes CoreDNS's clog writes.
var stdlogLevels = []struct {
	prefix string
	level  slog.Level
}{
	{"[DEBUG] ", slog.LevelDebug},
	{"[INFO] ", slog.LevelInfo},
	{"[WARNING] ", slog.LevelWarn},
	{"[ERROR] ", slog.LevelError},
	{"[FATAL] ", slog.LevelError},
}

// parseStdlogLine finds the level prefix and, for "plugin/<name>: msg",
// the component coredns.
func parseStdlogLine(line string) (slog.Level, string, string) {
	level, component := slog.LevelInfo, "stdlog"
	for _, l := range stdlogLevels {
		if rest, ok := strings.CutPrefix(line, l.prefix); ok {
			level, line = l.level, rest
			break
		}
	}
	if strings.HasPrefix(line, "plugin/") {
		component = "coredns"
	}
	return level, component, line
}
