// Command pause is the process that holds a pod sandbox's namespaces open.
//
// containerd's CRI plugin starts it as PID 1 of every pod sandbox. It blocks
// forever, reaps the zombie children that are re-parented to it (every
// SIGCHLD triggers a non-blocking wait4 loop), and exits 0 on SIGINT or
// SIGTERM. It uses only the standard library so it links statically:
//
//	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o pause ./cmd/pause
//
// kedge embeds it as the image kedge.local/pause (see pkg/embedded and
// scripts/build-helpers.sh); no registry is involved.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "pause: takes no arguments; it blocks until SIGINT or SIGTERM")
		os.Exit(2)
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: warning: not running as PID 1")
	}
	// Buffered: signals that arrive while we reap are not lost; several
	// SIGCHLD collapse into one, which the wait4 loop handles.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		os.Exit(0)
	}
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return // ECHILD: no children; 0: children left, none exited
		}
	}
}
