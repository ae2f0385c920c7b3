package join

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fastRetry keeps the tests short; LogEvery 0 logs every failed attempt.
var fastRetry = RetryPolicy{First: 10 * time.Millisecond, Max: 50 * time.Millisecond}

// joinOnce is one join attempt as the agent makes it (Post): fetch and pin
// the CA, then an authenticated POST.
func joinOnce(serverURL string, tok Token, name string) func(context.Context) error {
	return func(ctx context.Context) error {
		var out struct{ Got string }
		return Post(ctx, serverURL, tok, UserNode, "/v1/echo", map[string]string{"name": name}, &out, nil)
	}
}

// countAttempts wraps attempt to count its calls.
func countAttempts(n *atomic.Int32, attempt func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		n.Add(1)
		return attempt(ctx)
	}
}

func TestRetryWaitsForAServerThatIsNotListeningYet(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.serving(t, "127.0.0.1")
	// Reserve a port, free it, and serve on it only later: the first
	// attempts get "connection refused", as an agent booting before its server.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	go func() {
		time.Sleep(300 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		startSupervisorOn(t, l, &cert, ca.pem, "")
	}()
	logger, logs := logBuffer()
	var n atomic.Int32
	err = Retry(context.Background(), fastRetry, logger, "the test server", countAttempts(&n, joinOnce("https://"+addr, New(ca.pem, testSecret), "a1")))
	if err != nil {
		t.Fatal(err)
	}
	if n.Load() < 2 {
		t.Fatalf("%d attempts, want several (the server was not listening at first)", n.Load())
	}
	for _, want := range []string{"waiting for the test server", "connection refused", "done waiting for the test server"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

func TestRetryWaitsThrough503(t *testing.T) {
	ca, sup := startCluster(t)
	var n atomic.Int32
	// A server still starting answers 503 (its kube-system namespace does
	// not exist yet) to the first two joins.
	sup.busy.Store(2)
	logger, logs := logBuffer()
	if err := Retry(context.Background(), fastRetry, logger, "the server", countAttempts(&n, joinOnce(sup.URL(), New(ca.pem, testSecret), "a1"))); err != nil {
		t.Fatal(err)
	}
	if n.Load() != 3 {
		t.Fatalf("%d attempts, want 3", n.Load())
	}
	if !strings.Contains(logs.String(), "503 Service Unavailable") || !strings.Contains(logs.String(), "kube-system") {
		t.Errorf("log does not quote the server's answer:\n%s", logs)
	}
}

func TestRetryStopsAtADefiniteRefusal(t *testing.T) {
	ca, sup := startCluster(t)
	other := newTestCA(t)
	for name, tc := range map[string]struct {
		tok   Token
		node  string
		parts []string
	}{
		"wrong secret":      {New(ca.pem, "not-the-secret"), "a1", []string{"refused the --token's secret", "401"}},
		"CA hash mismatch":  {New(other.pem, testSecret), "a1", []string{"does not match the --token's hash"}},
		"node name refused": {New(ca.pem, testSecret), "taken", []string{"409", "the name is taken"}},
	} {
		t.Run(name, func(t *testing.T) {
			var n atomic.Int32
			err := Retry(context.Background(), fastRetry, nil, "the server", countAttempts(&n, joinOnce(sup.URL(), tc.tok, tc.node)))
			wantErr(t, err, tc.parts...)
			if !Permanent(err) {
				t.Errorf("Permanent(%v) = false", err)
			}
			if n.Load() != 1 {
				t.Errorf("%d attempts, want 1: a refusal is final", n.Load())
			}
		})
	}
}

func TestRetryNotAKedgeServer(t *testing.T) {
	// An HTTPS server without /cacerts (another service on the port):
	// refused at once, not waited for.
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(srv.Close)
	var n atomic.Int32
	err := Retry(context.Background(), fastRetry, nil, "the server", countAttempts(&n, joinOnce(srv.URL, Token{Secret: testSecret}, "a1")))
	wantErr(t, err, "404", "is this a kedge server?")
	if n.Load() != 1 {
		t.Errorf("%d attempts, want 1", n.Load())
	}
}

func TestRetryEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Retry(ctx, fastRetry, nil, "the server at https://127.0.0.1:1", joinOnce("https://127.0.0.1:1", Token{Secret: testSecret}, "a1"))
	wantErr(t, err, "stopped waiting for the server at https://127.0.0.1:1", "context deadline exceeded", "connection refused")
	if Permanent(err) {
		t.Errorf("Permanent(%v) = true", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v after the context ended", d)
	}
}

func TestRetryBacksOffToMax(t *testing.T) {
	var stamps []time.Time
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := RetryPolicy{First: 20 * time.Millisecond, Max: 80 * time.Millisecond, LogEvery: time.Hour}
	logger, logs := logBuffer()
	_ = Retry(ctx, p, logger, "x", func(context.Context) error {
		stamps = append(stamps, time.Now())
		if len(stamps) == 7 {
			cancel()
		}
		return errors.New("not yet")
	})
	if len(stamps) != 7 {
		t.Fatalf("%d attempts, want 7", len(stamps))
	}
	var gaps []time.Duration
	for i := 1; i < len(stamps); i++ {
		gaps = append(gaps, stamps[i].Sub(stamps[i-1]))
	}
	// 20, 40, 80, 80, 80, 80 ms, each up to 10% longer.
	for i, g := range gaps {
		want := min(p.First<<i, p.Max)
		if g < want || g > want+want/10+30*time.Millisecond {
			t.Errorf("gap %d: %v, want %v (+10%% jitter)", i, g, want)
		}
	}
	if c := strings.Count(logs.String(), "waiting for x"); c != 1 {
		t.Errorf("%d wait lines with LogEvery 1h, want 1:\n%s", c, logs)
	}
}

func TestPermanent(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{errors.New("dial tcp: connection refused"), false},
		{fmt.Errorf("wrapped: %w", refused(errors.New("401"))), true},
		{&CAMismatchError{URL: "u", Got: "a", Want: "b"}, true},
		{fmt.Errorf("x: %w", &tls.CertificateVerificationError{Err: errors.New("bad")}), true},
		{context.DeadlineExceeded, false},
	} {
		if got := Permanent(tc.err); got != tc.want {
			t.Errorf("Permanent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	for code, want := range map[int]bool{400: true, 401: true, 403: true, 404: true, 409: true, 408: false, 429: false, 500: false, 502: false, 503: false} {
		if got := refusedStatus(code); got != want {
			t.Errorf("refusedStatus(%d) = %v, want %v", code, got, want)
		}
	}
}
