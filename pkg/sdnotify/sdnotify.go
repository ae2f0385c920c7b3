package sdnotify

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Socket is the environment variable through which systemd names its
// notify socket: a path, or an abstract socket when it starts with @.
const Socket = "NOTIFY_SOCKET"

// Notifier sends state changes to the service manager. The zero value, and
// one built without NOTIFY_SOCKET, does nothing. Its methods are safe for
// concurrent use.
type Notifier struct {
	addr *net.UnixAddr // nil: not run by a service manager that listens
	log  *slog.Logger
}

// FromEnv returns a Notifier for the socket named by NOTIFY_SOCKET and
// unsets the variable (see the package doc), so it must run before
// anything that reads it: first thing in a role's Run.
func FromEnv(log *slog.Logger) *Notifier {
	n := &Notifier{log: log}
	if path := os.Getenv(Socket); path != "" {
		n.addr = &net.UnixAddr{Name: path, Net: "unixgram"}
		os.Unsetenv(Socket)
	}
	return n
}

// Enabled reports whether a service manager listens.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Status sets the one-line status systemctl status shows.
func (n *Notifier) Status(status string) { n.send("STATUS=" + oneLine(status)) }

// Ready tells the service manager that the service is up: a Type=notify
// unit becomes active (running). status replaces the start-up status.
func (n *Notifier) Ready(status string) {
	n.send(daemon.SdNotifyReady + "\nSTATUS=" + oneLine(status))
}

// Stopping tells the service manager that the service is shutting down.
// It has the signature context.AfterFunc takes.
func (n *Notifier) Stopping() { n.send(daemon.SdNotifyStopping + "\nSTATUS=stopping") }

// ReadyWhen waits for wait to return nil, then sends Ready(status); the
// status meanwhile says what it waits for. It returns when ready or when
// ctx is done (wait must return then too). Run it in its own goroutine.
func (n *Notifier) ReadyWhen(ctx context.Context, status string, wait Condition) {
	if !n.Enabled() {
		return
	}
	n.Status("waiting for " + wait.What)
	if err := wait.Wait(ctx); err != nil {
		if ctx.Err() == nil {
			n.log.Warn("not telling systemd the service is ready", "component", "sdnotify", "waiting_for", wait.What, "err", err)
		}
		return
	}
	n.Ready(status)
}

// Condition is what a service waits for before it is ready.
type Condition struct {
	What string                      // for the status line: "node n1 to be Ready"
	Wait func(context.Context) error // returns nil once it holds, an error when ctx is done
}

// send writes one datagram: sd_notify's variables, one per line.
func (n *Notifier) send(state string) {
	if !n.Enabled() {
		return
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err == nil {
		_, err = conn.Write([]byte(state))
		conn.Close()
	}
	if err != nil {
		// A service manager that stopped listening cannot be told; the
		// service itself is not the worse for it.
		n.log.Warn("telling systemd failed", "component", "sdnotify", "socket", n.addr.Name, "state", state, "err", err)
	}
}

// oneLine keeps a status from ending its variable early.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
