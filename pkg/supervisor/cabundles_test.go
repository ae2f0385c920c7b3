package supervisor

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/pki"
)

// TestCACertsDuringARotation: /cacerts serves the CA a token pins (the new
// CA alone once `rotate-ca` began, the same bytes the CA file holds after
// --finish), /v1-kedge/ca-bundles the full bundles, read per request.
func TestCACertsDuringARotation(t *testing.T) {
	ca, err := pki.Generate(pki.Config{Dir: filepath.Join(t.TempDir(), "tls"), ServiceIP: net.ParseIP("10.43.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{CACertFile: ca.ServerCA, CA: ca})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Wrap(http.NotFoundHandler()))
	defer srv.Close()
	get := func(path string) []byte {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s %s", path, resp.Status, b)
		}
		return b
	}
	before, _ := os.ReadFile(ca.ServerCA)
	if got := get(CACertsPath); string(got) != string(before) {
		t.Fatal("/cacerts before a rotation is not server-ca.crt's bytes")
	}
	if err := pki.StartCARotation(ca, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	during := get(CACertsPath)
	if join.CAHash(during) == join.CAHash(before) {
		t.Fatal("/cacerts still serves the old CA")
	}
	var bundles CABundles
	if err := json.Unmarshal(get(CABundlesPath), &bundles); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{ca.ServerCA, ca.ClientCA} {
		want, _ := os.ReadFile(path)
		if string(bundles.Files[filepath.Base(path)]) != string(want) {
			t.Errorf("%s: the bundle served is not the file", filepath.Base(path))
		}
	}
	if _, err := pki.FinishCARotation(ca, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if after := get(CACertsPath); string(after) != string(during) {
		t.Error("/cacerts changed at --finish: the token of the rotation would no longer join")
	}
}
