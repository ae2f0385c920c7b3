package supervisor

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kedge-io/kedge/pkg/pki"
)

// fuzzSecret and fuzzAgentSecret are the server and agent token secrets of
// the fuzzed supervisors.
const (
	fuzzSecret      = "s3cret"
	fuzzAgentSecret = "agent-s3cret"
)

// fuzzCA returns the cluster CAs of a fuzz target, generated once (key
// generation is slow) in a temporary directory of the fuzz target.
func fuzzCA(f *testing.F) func(t *testing.T) pki.Bundle {
	dir := f.TempDir()
	var (
		once sync.Once
		ca   pki.Bundle
		err  error
	)
	return func(t *testing.T) pki.Bundle {
		once.Do(func() {
			ca, err = pki.Generate(pki.Config{Dir: dir, ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
		})
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
}

// fuzzTempDir points os.TempDir at a directory of the fuzz target and
// returns it; checkNothingLeft checks a handler left it empty.
func fuzzTempDir(f *testing.F) string {
	dir := f.TempDir()
	f.Setenv("TMPDIR", dir)
	return dir
}

// checkNothingLeft fails unless dir is empty.
func checkNothingLeft(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("a handler left %s behind", filepath.Join(dir, e.Name()))
	}
}

// fuzzRequest builds a request of the fuzzed method, target and body with
// either the basic auth user:pass or, when rawAuth is set, that
// Authorization header; nil when the method or target cannot be sent.
func fuzzRequest(method, target, user, pass, rawAuth string, body []byte) *http.Request {
	if !strings.HasPrefix(target, "/") {
		target = "/" + target
	}
	r, err := http.NewRequest(method, "http://kedge.test"+target, strings.NewReader(string(body)))
	if err != nil {
		return nil
	}
	r.RequestURI = target
	if rawAuth != "" {
		r.Header.Set("Authorization", rawAuth)
	} else {
		r.SetBasicAuth(user, pass)
	}
	return r
}

// hasAuth reports whether r carries the basic auth user and the secret.
func hasAuth(r *http.Request, user, secret string) bool {
	u, p, ok := r.BasicAuth()
	return ok && secret != "" && u == user && p == secret
}

// checkAnswer checks the properties every answer has: a 4xx or 5xx says
// why in its body.
func checkAnswer(t *testing.T, r *http.Request, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code >= 400 && strings.TrimSpace(w.Body.String()) == "" {
		t.Errorf("%s %s: %d with an empty body", r.Method, r.URL.Path, w.Code)
	}
}

// FuzzWrap sends any method, path, auth and body to the supervisor's
// handler: it never panics; /cacerts and /ping answer 200 with the CA and
// "pong"; the join paths never answer 200 without the right user and
// secret; every other request reaches the apiserver; every error says why;
// nothing is left in the temporary directory.
func FuzzWrap(f *testing.F) {
	caOf := fuzzCA(f)
	tmp := fuzzTempDir(f)
	for _, s := range []struct{ method, path, user, pass, raw, body string }{
		{"GET", CACertsPath, "", "", "", ""},
		{"HEAD", CACertsPath, "", "", "", ""},
		{"POST", CACertsPath, "", "", "", "x"},
		{"GET", PingPath, "", "", "", ""},
		{"GET", "/ping/", "", "", "", ""},
		{"GET", "//ping", "", "", "", ""},
		{"GET", "/a/../ping", "", "", "", ""},
		{"GET", "/%70ing", "", "", "", ""},
		{"GET", NodePath, "node", fuzzSecret, "", ""},
		{"POST", NodePath, "node", fuzzSecret, "", `{"name":"w1","password":"0123456789abcdef0123"}`},
		{"POST", NodePath + "/", "node", fuzzSecret, "", "{}"},
		{"POST", "/v1-kedge//node", "node", fuzzSecret, "", "{}"},
		{"POST", ServerPath, "server", fuzzSecret, "", "{}"},
		{"PUT", ServerPath, "server", fuzzSecret, "", "{}"},
		{"POST", ServerPath, "", "", "Basic !!!", "{}"},
		{"DELETE", "/api/v1/secrets", "", "", "Bearer x", ""},
		{"OPTIONS", "*", "", "", "", ""},
		{"GET", "/\x00", "", "", "", ""},
	} {
		f.Add(s.method, s.path, s.user, s.pass, s.raw, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, method, target, user, pass, rawAuth string, body []byte) {
		r := fuzzRequest(method, target, user, pass, rawAuth, body)
		if r == nil {
			return
		}
		ca := caOf(t)
		caPEM, err := os.ReadFile(ca.ServerCA)
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(Config{CACertFile: ca.ServerCA, Secret: fuzzSecret, CA: ca})
		if err != nil {
			t.Fatal(err)
		}
		reached := false
		apiserver := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			reached = true
			http.Error(w, "apiserver", http.StatusTeapot)
		})
		w := httptest.NewRecorder()
		s.Wrap(apiserver).ServeHTTP(w, r)
		checkAnswer(t, r, w)
		if w.Code == http.StatusOK && !reached {
			switch body := w.Body.String(); {
			case r.URL.Path == CACertsPath && (body == string(caPEM) || r.Method == http.MethodHead):
			case r.URL.Path == PingPath && (body == "pong" || r.Method == http.MethodHead):
			case r.URL.Path == NodePath && hasAuth(r, "node", fuzzSecret):
			case r.URL.Path == ServerPath && hasAuth(r, "server", fuzzSecret):
			default:
				t.Errorf("%s %q answered 200 %q", r.Method, r.URL.Path, body)
			}
		}
		checkNothingLeft(t, tmp)
	})
}
