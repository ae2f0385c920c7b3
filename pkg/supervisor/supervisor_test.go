package supervisor

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestWrap(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "server-ca.crt")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{CACertFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	apiserver := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte("apiserver " + r.URL.Path))
	})
	srv := httptest.NewServer(s.Wrap(apiserver))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	want, _ := os.ReadFile(ca)
	if code, body := get("/cacerts"); code != 200 || body != string(want) {
		t.Fatalf("/cacerts = %d %q", code, body)
	}
	if code, body := get("/ping"); code != 200 || body != "pong" {
		t.Fatalf("/ping = %d %q", code, body)
	}
	if code, body := get("/api/v1/secrets"); code != http.StatusUnauthorized || body != "apiserver /api/v1/secrets" {
		t.Fatalf("other paths must reach the apiserver: %d %q", code, body)
	}
	if _, err := New(Config{CACertFile: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Fatal("New with a missing CA file succeeded")
	}
}
