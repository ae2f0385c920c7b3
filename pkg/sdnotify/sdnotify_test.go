package sdnotify

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// listen opens a unixgram socket as systemd's notify socket is, at name (a
// path, or @abstract), and points NOTIFY_SOCKET at it.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv(Socket, name)
	return conn
}

// next reads one datagram, as systemd does: one message per datagram.
func next(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no notify message: %v", err)
	}
	return string(buf[:n])
}

func TestProtocol(t *testing.T) {
	for _, tc := range []struct{ kind, name string }{
		{"path", filepath.Join(t.TempDir(), "notify")},
		{"abstract", "@kedge-sdnotify-test-" + strconv.Itoa(os.Getpid())}, // as systemd's own
	} {
		t.Run(tc.kind, func(t *testing.T) {
			conn := listen(t, tc.name)
			n := FromEnv(quiet)
			if v, ok := os.LookupEnv(Socket); ok {
				t.Fatalf("FromEnv left %s=%q in the environment (the kubelet and runc would use it)", Socket, v)
			}
			if !n.Enabled() {
				t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
			}
			n.Status("waiting for etcd\nand more")
			if got, want := next(t, conn), "STATUS=waiting for etcd and more"; got != want {
				t.Errorf("Status sent %q, want %q", got, want)
			}
			n.Ready("kedge server ready")
			if got, want := next(t, conn), "READY=1\nSTATUS=kedge server ready"; got != want {
				t.Errorf("Ready sent %q, want %q", got, want)
			}
			n.Stopping()
			if got, want := next(t, conn), "STOPPING=1\nSTATUS=stopping"; got != want {
				t.Errorf("Stopping sent %q, want %q", got, want)
			}
		})
	}
}

// TestWithoutSocket: not run by systemd, nothing is sent and nothing fails.
func TestWithoutSocket(t *testing.T) {
	t.Setenv(Socket, "")
	n := FromEnv(quiet)
	if n.Enabled() {
		t.Fatal("Enabled() = true without NOTIFY_SOCKET")
	}
	n.Status("x")
	n.Ready("x")
	n.Stopping()
	called := false
	n.ReadyWhen(context.Background(), "x", Condition{What: "y", Wait: func(context.Context) error { called = true; return nil }})
	if called {
		t.Error("ReadyWhen waited without a service manager to tell")
	}
	var zero *Notifier
	zero.Status("x") // a nil Notifier is as good as a disabled one
}

// TestSocketGone: a service manager that went away costs a log line, not the service.
func TestSocketGone(t *testing.T) {
	conn := listen(t, filepath.Join(t.TempDir(), "notify"))
	n := FromEnv(quiet)
	conn.Close()
	n.Ready("x") // must not panic or block
}

func TestReadyWhen(t *testing.T) {
	conn := listen(t, filepath.Join(t.TempDir(), "notify"))
	n := FromEnv(quiet)
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.ReadyWhen(context.Background(), "kedge agent ready", Condition{What: "node n1 to be Ready", Wait: func(ctx context.Context) error {
			<-release
			return nil
		}})
	}()
	if got, want := next(t, conn), "STATUS=waiting for node n1 to be Ready"; got != want {
		t.Errorf("first message %q, want %q", got, want)
	}
	// Nothing more until the condition holds: READY=1 must not come early.
	conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if k, err := conn.Read(make([]byte, 512)); err == nil {
		t.Fatalf("sent %d bytes before the condition held", k)
	}
	close(release)
	if got, want := next(t, conn), "READY=1\nSTATUS=kedge agent ready"; got != want {
		t.Errorf("then %q, want %q", got, want)
	}
	<-done

	// Cancelled while waiting: no READY=1.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { conn.Read(make([]byte, 512)); cancel() }() // the status line, then stop
	n.ReadyWhen(ctx, "x", Condition{What: "y", Wait: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }})
	conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if k, err := conn.Read(make([]byte, 512)); err == nil {
		t.Fatalf("sent %d bytes after ctx was done", k)
	}
}

func TestWaitNodeReady(t *testing.T) {
	client := fake.NewClientset()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- waitNodeReady(ctx, client, "n1") }()

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse}},
	}}
	if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("returned %v for a node that is not Ready", err)
	case <-time.After(2 * NodeReadyPoll):
	}
	node.Status.Conditions[0].Status = corev1.ConditionTrue
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("node Ready: %v", err)
	}

	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if err := waitNodeReady(ctx2, client, "absent"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("absent node: %v, want the context's error", err)
	}
}
