package upgrade

import (
	"fmt"
	"os"
	"syscall"
)

// RestartExitCode is the exit status with which kedge asks its service
// manager to start it again (the upgraded binary): non-zero, so that
// Restart=on-failure units restart it too (install.sh's unit has
// Restart=always, its OpenRC service respawns).
const RestartExitCode = 1

// UnderServiceManager reports whether a service manager runs this process
// and restarts it when it exits: systemd (NOTIFY_SOCKET, INVOCATION_ID) or
// OpenRC (RC_SVCNAME).
func UnderServiceManager() bool {
	for _, k := range []string{"NOTIFY_SOCKET", "INVOCATION_ID", "RC_SVCNAME"} {
		if os.Getenv(k) != "" {
			return true
		}
	}
	return false
}

// Restart runs the upgraded binary in place of this process, once every
// component has stopped: under a service manager it returns the exit
// status to end with (the service manager starts the new binary), run bare
// it re-executes the same command line, which does not return unless the
// exec fails.
func Restart(argv []string) int {
	if UnderServiceManager() {
		fmt.Fprintln(os.Stderr, "kedge: upgraded: exiting for the service manager to start the new binary")
		return RestartExitCode
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kedge: upgraded, but cannot find the new binary to run:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "kedge: upgraded: running", exe)
	err = syscall.Exec(exe, argv, os.Environ())
	fmt.Fprintln(os.Stderr, "kedge: upgraded, but exec", exe, "failed:", err)
	return 1
}
