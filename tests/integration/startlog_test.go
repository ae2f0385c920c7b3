package integration

import (
	"strings"
	"testing"
	"time"
)

// Targets of a fresh server's log: what a user reads after `kedge server`.
const (
	startLogWindow   = 60 * time.Second
	startLogMaxLines = 40
)

// TestStartLog: a fresh server (control plane and node) logs at most 40
// lines in its first 60 s, in one format (slog text, every line with a
// level), and no ERROR line: nothing is wrong.
func TestStartLog(t *testing.T) {
	n := newNode(t)
	t.Cleanup(func() { n.killall() })
	n.start()
	n.waitReady(3 * time.Minute)
	n.waitNodeReady(2 * time.Minute)
	if rest := time.Until(n.started.Add(startLogWindow)); rest > 0 {
		time.Sleep(rest)
	}
	log := n.log.String()
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	var errorLines, foreign []string
	for _, l := range lines {
		switch {
		case !strings.HasPrefix(l, "time=") || !strings.Contains(l, " level="):
			foreign = append(foreign, l)
		case strings.Contains(l, " level=ERROR "):
			errorLines = append(errorLines, l)
		}
	}
	t.Logf("a fresh server's first %s: %d lines, %d ERROR, %d not in kedge's format:\n%s", startLogWindow, len(lines), len(errorLines), len(foreign), log)
	if len(lines) > startLogMaxLines {
		t.Errorf("%d lines, want at most %d", len(lines), startLogMaxLines)
	}
	if len(errorLines) > 0 {
		t.Errorf("%d ERROR lines on a start where nothing is wrong:\n%s", len(errorLines), strings.Join(errorLines, "\n"))
	}
	if len(foreign) > 0 {
		t.Errorf("%d lines not in kedge's format:\n%s", len(foreign), strings.Join(foreign, "\n"))
	}
}
