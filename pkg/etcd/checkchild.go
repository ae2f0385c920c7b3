package etcd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
)

// CheckDataArgs are the arguments, after the kedge binary, of the hidden
// command that runs CheckMain: `kedge etcd check-data DIR`.
var CheckDataArgs = []string{"etcd", "check-data"}

// Exit codes of CheckMain.
const (
	checkCorrupt = 1
	checkFailed  = 3
	// A Go panic (bbolt's, on a damaged page) exits with status 2.
	checkPanicked = 2
)

// CheckMain is the child of CheckDataInChild: it checks dataDir, writes
// the problem to stderr and returns the exit code.
func CheckMain(dataDir string, stderr io.Writer) int {
	err := CheckData(dataDir)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrCorrupt):
		fmt.Fprintln(stderr, strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": "))
		return checkCorrupt
	default:
		fmt.Fprintln(stderr, err)
		return checkFailed
	}
}

// CheckDataInChild runs CheckData on dataDir in a child process, argv
// followed by dataDir (the kedge binary and CheckDataArgs), so that a
// panic of bbolt on damaged data ends the child, not kedge. The error
// wraps ErrCorrupt when the data is damaged.
func CheckDataInChild(ctx context.Context, argv []string, dataDir string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], append(append([]string(nil), argv[1:]...), dataDir)...)
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err == nil {
		return nil
	} else if !errors.As(err, &exit) {
		return fmt.Errorf("check etcd's data in %s: %w", dataDir, err)
	}
	msg := strings.TrimSpace(stderr.String())
	switch exit.ExitCode() {
	case checkCorrupt:
		return fmt.Errorf("%w: %s", ErrCorrupt, msg)
	case checkPanicked:
		first, _, _ := strings.Cut(msg, "\n")
		return fmt.Errorf("%w: %s: bbolt cannot read it: %s", ErrCorrupt, filepath.Join(dataDir, "member", "snap", "db"), strings.TrimPrefix(first, "panic: "))
	default:
		return fmt.Errorf("check etcd's data in %s: %s (%v)", dataDir, msg, err)
	}
}
