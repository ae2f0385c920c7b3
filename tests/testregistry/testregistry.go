// Package testregistry serves a real OCI registry from a test:
// go-containerregistry's registry (the distribution API, in memory) over
// HTTPS with its own CA and HTTP basic authentication, the password checked
// against a bcrypt hash as an htpasswd file holds it.
//
//	reg := testregistry.Start(t, dir, "kedge", "s3cret")
//	reg.PushTarball(t, "s3cret", "kedge/webapp", "1", testimage.Build(t))
//	// pull from reg.Server.Listener.Addr(), trusting reg.CA
package testregistry

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"
)

// Registry is go-containerregistry's registry (the OCI distribution
// API, in memory) behind HTTPS and basic authentication checked against a
// bcrypt hash, as an htpasswd file holds it. It records each request.
type Registry struct {
	// Server serves the registry; Server.Listener.Addr() is its host:port.
	Server *httptest.Server
	// CA is the PEM file of the CA that signed the server's certificate.
	CA   string
	user string
	hash []byte
	api  http.Handler

	mu   sync.Mutex
	seen []string // "401 GET /v2/…"
}

// ServeHTTP checks the credentials and serves the distribution API.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	u, p, ok := req.BasicAuth()
	if !ok || u != r.user || bcrypt.CompareHashAndPassword(r.hash, []byte(p)) != nil {
		r.record(req, http.StatusUnauthorized)
		w.Header().Set("WWW-Authenticate", `Basic realm="kedge test registry"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return
	}
	r.record(req, 0)
	r.api.ServeHTTP(w, req)
}

func (r *Registry) record(req *http.Request, code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, fmt.Sprintf("%d %s %s", code, req.Method, req.URL.Path))
}

// Requests lists the requests the registry got, one a line: the status
// (401, or 0 for an authenticated request), the method and the path.
func (r *Registry) Requests() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.seen, "\n")
}

// Start serves a registry on 127.0.0.1 with a certificate for 127.0.0.1
// and localhost, signed by a CA written to dir, that accepts user with
// password. It stops when the test ends.
func Start(t *testing.T, dir, user, password string) *Registry {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kedge test registry CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "registry"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	r := &Registry{CA: filepath.Join(dir, "registry-ca.crt"), user: user, hash: hash,
		api: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	if err := os.WriteFile(r.CA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Server = httptest.NewUnstartedServer(r)
	r.Server.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	r.Server.StartTLS()
	t.Cleanup(r.Server.Close)
	return r
}

// PushTarball uploads the image of a docker-archive tarball as repo:tag.
func (r *Registry) PushTarball(t *testing.T, password, repo, tag string, image []byte) {
	t.Helper()
	img, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(image)), nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var blobs [][]byte
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		blob, _ := io.ReadAll(rc)
		rc.Close()
		blobs = append(blobs, blob)
	}
	cfg, _ := img.RawConfigFile()
	manifest, _ := img.RawManifest()
	mt, _ := img.MediaType()
	r.Push(t, password, repo, tag, string(mt), manifest, append(blobs, cfg)...)
}

// Push uploads blobs and then the manifest (of media type mediaType) as
// repo:tag, with the distribution API's own requests.
func (r *Registry) Push(t *testing.T, password, repo, tag, mediaType string, manifest []byte, blobs ...[]byte) {
	t.Helper()
	pool := x509.NewCertPool()
	raw, _ := os.ReadFile(r.CA)
	pool.AppendCertsFromPEM(raw)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := "https://" + r.Server.Listener.Addr().String() + "/v2/" + repo
	do := func(method, url, contentType string, body []byte, want int) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(r.user, password)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != want {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s %s: %s %s", method, url, resp.Status, b)
		}
		return resp
	}
	for _, blob := range blobs {
		loc := do(http.MethodPost, base+"/blobs/uploads/", "", nil, http.StatusAccepted).Header.Get("Location")
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		target, err := u.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		q := target.Query()
		q.Set("digest", digest.FromBytes(blob).String())
		target.RawQuery = q.Encode()
		do(http.MethodPut, target.String(), "application/octet-stream", blob, http.StatusCreated)
	}
	do(http.MethodPut, base+"/manifests/"+tag, mediaType, manifest, http.StatusCreated)
}
