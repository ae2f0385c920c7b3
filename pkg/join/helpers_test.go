package join

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testSecret is the secret the test supervisor accepts.
const testSecret = "s3cret-Token.value"

// testCA is a self-signed CA made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// newTestCA creates a self-signed ECDSA CA.
func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kedge-test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// serving issues a TLS serving certificate signed by the CA for the given
// names; a name that parses as an IP becomes an IP SAN.
func (ca *testCA) serving(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kedge-test-server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// request is what the test supervisor saw of one request.
type request struct {
	Method, Path, Authorization string
}

// supervisor is a fake supervisor API that records every request.
type supervisor struct {
	srv *httptest.Server

	mu   sync.Mutex
	reqs []request
	// busy is how many more POSTs of /v1/echo get 503, as from a server
	// still starting.
	busy atomic.Int32
}

// requests returns a copy of the requests seen so far.
func (s *supervisor) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

// URL is the supervisor's https:// address.
func (s *supervisor) URL() string { return s.srv.URL }

// startSupervisor serves caPEM at /cacerts (404 if nil), "pong" at /ping, "hello
// <user>" at /v1/hello for basic auth with testSecret, and a redirect to
// redirectTo at /v1/redirect, and a JSON echo at POST /v1/echo. cert is its serving certificate; nil means
// httptest's own, which no test CA signed. It is closed when the test ends.
func startSupervisor(t *testing.T, cert *tls.Certificate, caPEM []byte, redirectTo string) *supervisor {
	t.Helper()
	return startSupervisorOn(t, nil, cert, caPEM, redirectTo)
}

// startSupervisorOn is startSupervisor serving on l (nil: a new port).
func startSupervisorOn(t *testing.T, l net.Listener, cert *tls.Certificate, caPEM []byte, redirectTo string) *supervisor {
	t.Helper()
	s := &supervisor{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cacerts", func(w http.ResponseWriter, r *http.Request) {
		if caPEM == nil {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(caPEM)
	})
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("pong")) })
	mux.HandleFunc("GET /v1/hello", func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || pass != testSecret {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte("hello " + user))
	})
	// POST /v1/echo, with basic auth by testSecret, answers {"got": <the
	// request's "name">}, or 409 with a message when the name is "taken".
	mux.HandleFunc("POST /v1/echo", func(w http.ResponseWriter, r *http.Request) {
		if _, pass, ok := r.BasicAuth(); !ok || pass != testSecret {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if s.busy.Add(-1) >= 0 {
			http.Error(w, `namespaces "kube-system" not found`, http.StatusServiceUnavailable)
			return
		}
		var in struct{ Name string }
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if in.Name == "taken" {
			http.Error(w, "refused: the name is taken", http.StatusConflict)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"got": in.Name})
	})
	mux.HandleFunc("GET /v1/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, redirectTo, http.StatusFound)
	})
	record := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, request{Method: r.Method, Path: r.URL.Path, Authorization: r.Header.Get("Authorization")})
		s.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
	s.srv = httptest.NewUnstartedServer(record)
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are expected
	if cert != nil {
		s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	if l != nil {
		s.srv.Listener.Close()
		s.srv.Listener = l
	}
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

// startCluster starts a supervisor whose certificate, for 127.0.0.1, is
// signed by a new CA it serves.
func startCluster(t *testing.T) (*testCA, *supervisor) {
	t.Helper()
	ca := newTestCA(t)
	cert := ca.serving(t, "127.0.0.1", "localhost")
	return ca, startSupervisor(t, &cert, ca.pem, "")
}

// logBuffer returns a logger that writes text records to the returned
// buffer.
func logBuffer() (*slog.Logger, *syncBuffer) {
	var b syncBuffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// wantErr fails unless err is non-nil and contains every part.
func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}
