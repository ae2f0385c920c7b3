package join

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
)

func TestFetchCAPinned(t *testing.T) {
	ca, sup := startCluster(t)
	log, logs := logBuffer()

	got, err := FetchCA(context.Background(), sup.URL(), New(ca.pem, testSecret), log)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ca.pem) {
		t.Errorf("FetchCA returned %q, want the served CA", got)
	}
	want := []request{{Method: "GET", Path: "/cacerts"}, {Method: "GET", Path: "/ping"}}
	if reqs := sup.requests(); fmt.Sprint(reqs) != fmt.Sprint(want) {
		t.Errorf("requests %+v, want %+v (no Authorization anywhere)", reqs, want)
	}
	if logs.String() != "" {
		t.Errorf("a pinned fetch logged %q", logs)
	}
}

func TestFetchCAPinnedMismatchSendsNothingMore(t *testing.T) {
	_, sup := startCluster(t)
	other := newTestCA(t)
	tok := New(other.pem, testSecret)

	_, err := FetchCA(context.Background(), sup.URL(), tok, nil)
	var mismatch *CAMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("error %v is not a *CAMismatchError", err)
	}
	served := sup.requests()
	want := fmt.Sprintf("join: the CA at %s/cacerts does not match the --token's hash (sha256 %s, token says %s): wrong server or a man in the middle",
		sup.URL(), mismatch.Got, tok.CAHash)
	if err.Error() != want {
		t.Errorf("error\n%s\nwant\n%s", err, want)
	}
	if len(served) != 1 || served[0].Path != "/cacerts" || served[0].Authorization != "" {
		t.Errorf("requests %+v, want exactly one GET /cacerts without Authorization", served)
	}
	if strings.Contains(err.Error(), testSecret) {
		t.Errorf("error %q shows the secret", err)
	}
}

func TestFetchCAUnpinnedWarns(t *testing.T) {
	ca, sup := startCluster(t)
	log, logs := logBuffer()

	got, err := FetchCA(context.Background(), sup.URL(), Token{Secret: testSecret}, log)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ca.pem) {
		t.Errorf("FetchCA returned %q, want the served CA", got)
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN"); n != 1 || strings.Count(out, "\n") != 1 {
		t.Errorf("log %q: want exactly one WARN record", out)
	}
	for _, part := range []string{"not pinned", "ca_sha256=" + CAHash(ca.pem), "server=" + sup.URL()} {
		if !strings.Contains(out, part) {
			t.Errorf("warning %q lacks %q", out, part)
		}
	}
	if strings.Contains(out, testSecret) {
		t.Errorf("warning %q shows the secret", out)
	}
	for _, r := range sup.requests() {
		if r.Authorization != "" {
			t.Errorf("request %+v carried Authorization", r)
		}
	}
}

func TestFetchCARefusesAServerNotSignedByItsCA(t *testing.T) {
	ca := newTestCA(t)
	// httptest's own certificate (valid for 127.0.0.1) is not signed by ca.
	sup := startSupervisor(t, nil, ca.pem, "")

	_, err := FetchCA(context.Background(), sup.URL(), New(ca.pem, testSecret), nil)
	wantErr(t, err, "--server "+sup.URL(), "not signed by the CA it serves at "+sup.URL()+"/cacerts")
	// The /ping request dies in the TLS handshake, before the handler.
	if reqs := sup.requests(); len(reqs) != 1 || reqs[0].Path != "/cacerts" {
		t.Errorf("requests %+v, want only /cacerts", reqs)
	}
}

func TestFetchCARefusesACertificateForAnotherHost(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.serving(t, "kedge.example.com")
	sup := startSupervisor(t, &cert, ca.pem, "")

	_, err := FetchCA(context.Background(), sup.URL(), New(ca.pem, testSecret), nil)
	wantErr(t, err, "--server "+sup.URL(), `not valid for "127.0.0.1"`)
}

func TestFetchCARefusesABodyThatIsNotPEM(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.serving(t, "127.0.0.1")
	for name, body := range map[string][]byte{
		"html":          []byte("<html>hello</html>"),
		"key":           []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
		"trailing junk": append(append([]byte(nil), ca.pem...), "junk"...),
	} {
		t.Run(name, func(t *testing.T) {
			sup := startSupervisor(t, &cert, body, "")
			_, err := FetchCA(context.Background(), sup.URL(), Token{Secret: testSecret}, nil)
			wantErr(t, err, "--server "+sup.URL(), sup.URL()+"/cacerts did not answer a CA bundle")
			if reqs := sup.requests(); len(reqs) != 1 {
				t.Errorf("requests %+v, want only /cacerts", reqs)
			}
		})
	}
}

func TestFetchCAHTTPErrors(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.serving(t, "127.0.0.1")
	sup := startSupervisor(t, &cert, nil, "")
	_, err := FetchCA(context.Background(), sup.URL(), New(ca.pem, testSecret), nil)
	wantErr(t, err, "--server "+sup.URL(), "GET "+sup.URL()+"/cacerts: 404 Not Found")

	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "https://" + l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = FetchCA(context.Background(), dead, New(ca.pem, testSecret), nil)
	wantErr(t, err, "--server "+dead, dead+"/cacerts")
}

func TestFetchCARefusesBadServerURLs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://127.0.0.1:6443", "scheme must be https"},
		{"127.0.0.1:6443", "--server"},
		{"https://", "has no host"},
		{"https://node:" + testSecret + "@127.0.0.1:6443", "must not hold a user or password"},
		{"https://127.0.0.1:6443/?x=1", "query"},
		{"https://127.0.0.1:6443/%zz", "not a URL"},
	} {
		_, err := FetchCA(context.Background(), tc.in, New(nil, testSecret), nil)
		wantErr(t, err, "join: --server", tc.want)
		if err != nil && strings.Contains(err.Error(), testSecret) {
			t.Errorf("error %q shows the secret", err)
		}
	}
}

func TestFetchCAAcceptsATrailingSlash(t *testing.T) {
	ca, sup := startCluster(t)
	if _, err := FetchCA(context.Background(), sup.URL()+"/", New(ca.pem, testSecret), nil); err != nil {
		t.Fatal(err)
	}
	if reqs := sup.requests(); len(reqs) != 2 || reqs[0].Path != "/cacerts" {
		t.Errorf("requests %+v", reqs)
	}
}
