package secretsencrypt

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/server/options/encryptionconfig"

	"github.com/kedge-io/kedge/pkg/pki"
)

// TestGenerateAndStages: the generated file and every rotation stage load
// in the apiserver's own loader; the stages move the keys as documented.
func TestGenerateAndStages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cred", FileName)
	if err := Generate(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%v, %v; want 0600", st, err)
	}
	first, _ := os.ReadFile(path)
	if err := Generate(path); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(path); string(again) != string(first) {
		t.Fatal("Generate replaced an existing key")
	}
	load := func(c Config) {
		t.Helper()
		raw, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "c.json")
		if err := os.WriteFile(p, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if _, err := encryptionconfig.LoadEncryptionConfig(ctx, p, true, "test"); err != nil {
			t.Fatalf("the apiserver refuses %s: %v", raw, err)
		}
	}
	c, _, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	load(c)
	k0 := KeyNames(c)
	prepared, err := Prepare(c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	load(prepared)
	kp := KeyNames(prepared)
	if len(kp) != 2 || kp[0] != k0[0] {
		t.Fatalf("prepared keys %v from %v", kp, k0)
	}
	promoted, _ := Promote(prepared)
	load(promoted)
	if kr := KeyNames(promoted); !slices.Equal(kr, []string{kp[1], kp[0]}) {
		t.Fatalf("promoted keys %v", kr)
	}
	retired, _ := Retire(promoted)
	load(retired)
	if kr := KeyNames(retired); !slices.Equal(kr, []string{kp[1]}) {
		t.Fatalf("retired keys %v", kr)
	}
	for _, bad := range []string{`{}`, `{"resources":[{"resources":["secrets"],"providers":[{"identity":{}}]}]}`,
		`{"resources":[{"resources":["secrets"],"providers":[{"secretbox":{"keys":[{"name":"k","secret":"c2hvcnQ="}]}},{"identity":{}}]}]}`} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("Decode(%s) accepted", bad)
		}
	}
}

// TestHandlerNeedsTheAdmin: only the admin's client certificate reads the
// status; it names the keys and never their secrets.
func TestHandlerNeedsTheAdmin(t *testing.T) {
	ca, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), FileName)
	if err := Generate(file); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(NewHandler(file, ca.ClientCA))
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	defer srv.Close()
	get := func(certFile, keyFile string) (*http.Response, []byte) {
		tr := srv.Client().Transport.(*http.Transport).Clone()
		if certFile != "" {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			tr.TLSClientConfig.Certificates = []tls.Certificate{c}
		}
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL + Path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&b)
		return resp, b
	}
	if resp, _ := get("", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no certificate: %d", resp.StatusCode)
	}
	if resp, _ := get(ca.ControllerManagerCert, ca.ControllerManagerKey); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("controller-manager certificate: %d", resp.StatusCode)
	}
	resp, body := get(ca.AdminCert, ca.AdminKey)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin: %d %s", resp.StatusCode, body)
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil || !st.Enabled || len(st.Keys) != 1 || st.FileHash != st.LoadedHash {
		t.Fatalf("status %s, %v", body, err)
	}
	c, _, _ := Read(file)
	keys, _ := Keys(c)
	if contains(body, keys[0].Secret) {
		t.Fatal("the status holds the key's secret")
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }
