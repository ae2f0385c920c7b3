package loadbalancer

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// backend answers every line with its name.
func backend(t *testing.T, name string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					_, _ = io.WriteString(c, name+"\n")
				}
			}()
		}
	}()
	return l
}

func ask(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "who\n"); err != nil {
		return ""
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

func TestFailoverAndUpdate(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	defer b.Close()
	lb := New(Config{Listen: "127.0.0.1:0", Servers: []string{a.Addr().String(), b.Addr().String()}, HealthInterval: 100 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := lb.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer lb.Stop(t.Context())
	addr := lb.listener.Addr().String()
	first := ask(t, addr)
	if first != "a" && first != "b" {
		t.Fatalf("first answer %q", first)
	}
	if again := ask(t, addr); again != first {
		t.Fatalf("the balancer did not stick to %s: %s", first, again)
	}
	// The server in use goes away: new connections go to the other one.
	survivor := "b"
	if first == "a" {
		a.Close()
	} else {
		b.Close()
		survivor = "a"
	}
	if got := ask(t, addr); got != survivor {
		t.Fatalf("after %s went away: %q, want %s", first, got, survivor)
	}
	// Update: a new server list; duplicates dropped, the current one kept first.
	c := backend(t, "c")
	defer c.Close()
	lb.Update([]string{c.Addr().String(), c.Addr().String()})
	if got := lb.Servers(); len(got) != 1 {
		t.Fatalf("servers after Update = %v", got)
	}
	if got := ask(t, addr); got != "c" {
		t.Fatalf("after Update: %q, want c", got)
	}
}

func TestStartFailsOnBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lb := New(Config{Listen: l.Addr().String(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := lb.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "load balancer") {
		t.Fatalf("err = %v", err)
	}
}

func TestUnhealthyServerLosesItsConnections(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	defer a.Close()
	defer b.Close()
	lb := New(Config{Listen: "127.0.0.1:0", Servers: []string{a.Addr().String(), b.Addr().String()}, HealthInterval: 100 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := lb.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer lb.Stop(t.Context())
	// A long-lived client connection (a watch), open through the balancer.
	c, err := net.DialTimeout("tcp", lb.listener.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	_, _ = io.WriteString(c, "who\n")
	first, _ := r.ReadString('\n')
	first = strings.TrimSpace(first)
	// Its server fails its health check (here: stops listening; a cut
	// cable times out the same way): the balancer closes the connection,
	// though the backend's end is still open, so that the client redials.
	if first == "a" {
		lb.mark(a.Addr().String(), false)
	} else {
		lb.mark(b.Addr().String(), false)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("the connection to unhealthy %s stayed open: %v", first, err)
	}
}
