package registries

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writePEM writes a self-signed CA certificate and its key as PEM files
// under dir and returns their paths.
func writePEM(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "registries test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "client.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestParse(t *testing.T) {
	ca, key := writePEM(t, t.TempDir())
	r, err := Parse([]byte(`
mirrors:
  docker.io:
    endpoint:
      - "https://mirror.example.com:5000"
      - "http://10.0.0.5:5000/some/root"
    rewrite:
      "^rancher/(.*)": "mirrorproject/rancher-images/$1"
      "^library/(.*)": "hub/$1"
  "*":
    endpoint: ["https://cache.example.com"]
configs:
  "mirror.example.com:5000":
    auth:
      username: kedge
      password: s3cret
    tls:
      ca_file: ` + ca + `
      cert_file: ` + ca + `
      key_file: ` + key + `
  ghcr.io:
    auth: {identity_token: tok}
  "*":
    tls: {insecure_skip_verify: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	hub := r.Mirrors["docker.io"]
	if len(hub.Endpoints) != 2 || hub.Endpoints[1] != "http://10.0.0.5:5000/some/root" {
		t.Errorf("endpoints = %v", hub.Endpoints)
	}
	if len(hub.Rewrites) != 2 || hub.Rewrites[0].Pattern.String() != "^rancher/(.*)" {
		t.Fatalf("rewrites (in file order) = %v", hub.Rewrites)
	}
	for in, want := range map[string]string{
		"rancher/coredns": "mirrorproject/rancher-images/coredns",
		"library/nginx":   "hub/nginx",
		"other/thing":     "other/thing",
	} {
		if got, _ := hub.Rewrites.Apply(in); got != want {
			t.Errorf("rewrite %s = %s, want %s", in, got, want)
		}
	}
	if a := r.Auths()["ghcr.io"]; a.IdentityToken != "tok" {
		t.Errorf("identity_token is an alias of identitytoken: %+v", a)
	}
	if a := r.Auths()["mirror.example.com:5000"]; a.Username != "kedge" || a.Password != "s3cret" {
		t.Errorf("auth = %+v", a)
	}
	if !r.HasRewrites() || r.Empty() {
		t.Errorf("HasRewrites %v Empty %v", r.HasRewrites(), r.Empty())
	}
	if tls := r.tlsFor("unknown.example.com"); tls == nil || !tls.InsecureSkipVerify {
		t.Errorf("wildcard TLS not applied: %+v", tls)
	}
	if _, err := Parse(nil); err != nil {
		t.Errorf("empty file: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	ca, _ := writePEM(t, dir)
	cases := []struct{ name, yaml, want string }{
		{"unknown top key", "mirror:\n  docker.io: {}\n", `line 1: unknown key "mirror" (known here: mirrors, configs)`},
		{"unknown mirror key", "mirrors:\n  docker.io:\n    endpoints: [https://m]\n", `line 3: unknown key "endpoints" (known here: endpoint, rewrite)`},
		{"unknown tls key", "configs:\n  m:\n    tls: {ca: /x}\n", `unknown key "ca" (known here: ca_file, cert_file, key_file, insecure_skip_verify)`},
		{"bad regex", "mirrors:\n  docker.io:\n    endpoint: [https://m]\n    rewrite: {\"^(x\": \"y\"}\n", `line 4: rewrite "^(x": not a regular expression`},
		{"endpoint not a URL", "mirrors:\n  docker.io:\n    endpoint: [mirror.example.com:5000]\n", `mirrors."docker.io".endpoint[0] "mirror.example.com:5000": not an http or https URL`},
		{"endpoint with user", "mirrors:\n  docker.io:\n    endpoint: [\"https://u:p@m\"]\n", `"https://u:xxxxx@m": want https://host[:port][/path], with no user, query or fragment`},
		{"mirror key is a URL", "mirrors:\n  \"https://docker.io\":\n    endpoint: [https://m]\n", `mirrors."https://docker.io": want a registry host`},
		{"rewrite without endpoints", "mirrors:\n  docker.io:\n    rewrite: {a: b}\n", `mirrors."docker.io".rewrite: applies to the mirror's endpoints`},
		{"missing ca_file", "configs:\n  m:\n    tls: {ca_file: " + filepath.Join(dir, "nope.crt") + "}\n", `configs."m".tls.ca_file: stat ` + filepath.Join(dir, "nope.crt") + `: no such file`},
		{"relative ca_file", "configs:\n  m:\n    tls: {ca_file: ca.crt}\n", `configs."m".tls.ca_file "ca.crt": want an absolute path`},
		{"cert without key", "configs:\n  m:\n    tls: {cert_file: " + ca + "}\n", `configs."m".tls: cert_file and key_file go together`},
		{"two credentials", "configs:\n  m:\n    auth: {username: u, password: p, identitytoken: t}\n", `configs."m".auth: give one of`},
		{"password only", "configs:\n  m:\n    auth: {password: p}\n", `configs."m".auth.username: missing`},
		{"auth not base64", "configs:\n  m:\n    auth: {auth: '%%%'}\n", `configs."m".auth.auth: not base64`},
		{"wildcard credentials", "configs:\n  \"*\":\n    auth: {username: u, password: p}\n", `configs."*".auth: credentials for every host`},
		{"two documents", "mirrors: {}\n---\nconfigs: {}\n", `a second YAML document`},
		{"duplicate key", "mirrors:\n  docker.io: {}\n  docker.io: {}\n", `line 3: mapping key "docker.io" already defined at line 2`},
		{"wrong type", "mirrors:\n  docker.io:\n    endpoint: https://m\n", `line 3: cannot unmarshal a !!str value into []string`},
		{"secret in the wrong place", "configs:\n  m:\n    auth: s3cret\n", `line 3: cannot unmarshal a !!str value into registries.Auth`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v\nwant an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error repeats a secret: %v", err)
			}
			t.Log(err)
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "registries.yaml")
	if r, err := Load(missing, false); err != nil || !r.Empty() {
		t.Fatalf("missing default file: %+v, %v", r, err)
	}
	if _, err := Load(missing, true); err == nil || !strings.Contains(err.Error(), "--private-registry "+missing) {
		t.Fatalf("missing named file: %v", err)
	}
	if err := os.WriteFile(missing, []byte("mirrors:\n  docker.io:\n    endpont: [https://m]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(missing, false)
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), `"endpont"`) {
		t.Fatalf("error does not name the file and the key: %v", err)
	}
	if err := os.WriteFile(missing, []byte("mirrors:\n  docker.io:\n    endpoint: [https://m]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Load(missing, false)
	if err != nil || r.File != missing || len(r.Mirrors) != 1 {
		t.Fatalf("Load = %+v, %v", r, err)
	}
}

func TestPlanRewrite(t *testing.T) {
	r, err := Parse([]byte(`
mirrors:
  docker.io:
    endpoint: ["https://m.example.com"]
    rewrite: {"^rancher/(.*)": "mirrorproject/rancher-images/$1"}
  registry.example.test:5000:
    endpoint: ["https://m.example.com"]
  "*":
    endpoint: ["https://cache.example.com"]
    rewrite: {"^(.*)$": "cache/$1"}
`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		image, pull, name string
		rewrote           bool
	}{
		{"rancher/coredns:1.6.3", "docker.io.kedge-rewrite.invalid/mirrorproject/rancher-images/coredns:1.6.3", "docker.io/rancher/coredns:1.6.3", true},
		{"nginx", "docker.io.kedge-rewrite.invalid/library/nginx:latest", "docker.io/library/nginx:latest", false},
		{"quay.io/a/b@sha256:" + strings.Repeat("a", 64), "quay.io.kedge-rewrite.invalid/cache/a/b@sha256:" + strings.Repeat("a", 64), "quay.io/a/b@sha256:" + strings.Repeat("a", 64), true},
	}
	for _, tc := range cases {
		p, ok, err := r.planRewrite(tc.image)
		if err != nil || !ok || p.pull != tc.pull || p.image != tc.name || p.rewrote != tc.rewrote {
			t.Errorf("planRewrite(%s) = %+v, %v, %v; want pull %s as %s", tc.image, p, ok, err, tc.pull, tc.name)
		}
	}
	// A registry with its own mirror without rewrites: containerd pulls it.
	if _, ok, err := r.planRewrite("registry.example.test:5000/x:1"); ok || err != nil {
		t.Errorf("registry without rewrites planned: %v %v", ok, err)
	}
	bad, _ := Parse([]byte("mirrors:\n  docker.io:\n    endpoint: [https://m]\n    rewrite: {\"^(.*)$\": \"UPPER/$1\"}\n"))
	if _, _, err := bad.planRewrite("nginx"); err == nil || !strings.Contains(err.Error(), `mirrors."docker.io".rewrite`) {
		t.Errorf("a rewrite to an invalid name: %v", err)
	}
	if got := RewriteHost("registry.example.test:5000"); got != "registry.example.test-5000.kedge-rewrite.invalid" {
		t.Errorf("RewriteHost = %s", got)
	}
}
