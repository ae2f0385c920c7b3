package integration

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
	"golang.org/x/crypto/bcrypt"

	"github.com/kedge-io/kedge/tests/testimage"
)

// testRegistry is go-containerregistry's registry (the OCI distribution
// API, in memory) behind HTTPS and basic authentication checked against a
// bcrypt hash, as an htpasswd file holds it. It records each request.
type testRegistry struct {
	srv  *httptest.Server
	ca   string // PEM file of the CA that signed the server's certificate
	user string
	hash []byte
	api  http.Handler

	mu   sync.Mutex
	seen []string // "401 GET /v2/…"
}

func (r *testRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
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

func (r *testRegistry) record(req *http.Request, code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, fmt.Sprintf("%d %s %s", code, req.Method, req.URL.Path))
}

func (r *testRegistry) requests() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.seen, "\n")
}

// startRegistry serves a registry on 127.0.0.1 with a certificate for
// 127.0.0.1 and localhost, signed by a CA written to dir.
func startRegistry(t *testing.T, dir, user, password string) *testRegistry {
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
	r := &testRegistry{ca: filepath.Join(dir, "registry-ca.crt"), user: user, hash: hash,
		api: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	write(t, r.ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})))
	r.srv = httptest.NewUnstartedServer(r)
	r.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	r.srv.StartTLS()
	t.Cleanup(r.srv.Close)
	return r
}

// push uploads the test image to the registry as repo:tag with the
// distribution API's own requests (a blob upload per blob, then the manifest).
func (r *testRegistry) push(t *testing.T, image []byte, password, repo, tag string) {
	t.Helper()
	img, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(image)), nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	raw, _ := os.ReadFile(r.ca)
	pool.AppendCertsFromPEM(raw)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := "https://" + r.srv.Listener.Addr().String() + "/v2/" + repo
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
	upload := func(digest string, blob []byte) {
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
		q.Set("digest", digest)
		target.RawQuery = q.Encode()
		do(http.MethodPut, target.String(), "application/octet-stream", blob, http.StatusCreated)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		blob, _ := io.ReadAll(rc)
		rc.Close()
		upload(d.String(), blob)
	}
	cfgName, _ := img.ConfigName()
	cfg, _ := img.RawConfigFile()
	upload(cfgName.String(), cfg)
	manifest, _ := img.RawManifest()
	mt, _ := img.MediaType()
	do(http.MethodPut, base+"/manifests/"+tag, string(mt), manifest, http.StatusCreated)
}

// TestPrivateRegistry: pods pull images named after registries that do not
// exist through mirrors on a real registry (HTTPS with its own CA, basic
// auth), as registries.yaml configures them: with the right password, with
// a rewrite of the repository name, and with a wrong password (an Event
// naming the registry).
func TestPrivateRegistry(t *testing.T) {
	n := newNode(t)
	t.Cleanup(func() { n.killall() })
	const user, password = "kedge", "registry-s3cret"
	reg := startRegistry(t, n.dir, user, password)
	image := testimage.Build(t)
	begin := time.Now()
	reg.push(t, image, password, "kedge/webapp", "1")
	reg.push(t, image, password, "mirrored/webapp", "1")
	t.Logf("pushed 2 tags (%d KiB image) in %s", len(image)/1024, time.Since(begin).Round(time.Millisecond))

	port := reg.srv.Listener.Addr().(*net.TCPAddr).Port
	file := filepath.Join(n.dir, "registries.yaml")
	write(t, file, fmt.Sprintf(`mirrors:
  registry.example.test:
    endpoint: ["https://127.0.0.1:%[1]d"]
  rewrite.example.test:
    endpoint: ["https://127.0.0.1:%[1]d"]
    rewrite:
      "^app/(.*)$": "mirrored/$1"
  badpass.example.test:
    endpoint: ["https://localhost:%[1]d"]
configs:
  "127.0.0.1:%[1]d":
    auth: {username: %[2]s, password: %[3]s}
    tls: {ca_file: %[4]s}
  "localhost:%[1]d":
    auth: {username: %[2]s, password: not-the-password}
    tls: {ca_file: %[4]s}
`, port, user, password, reg.ca))

	n.start("--private-registry", file)
	n.waitReady(3 * time.Minute)
	n.waitNodeReady(2 * time.Minute)
	nodeReady := time.Now()

	hosts := filepath.Join(n.dataDir(), "agent", "etc", "containerd", "certs.d", "registry.example.test", "hosts.toml")
	if st, err := os.Stat(hosts); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", hosts, st, err)
	}
	if raw, _ := os.ReadFile(hosts); strings.Contains(string(raw), password) {
		t.Fatalf("the password is in %s", hosts)
	}

	for pod, img := range map[string]string{
		"mirrored":  "registry.example.test/kedge/webapp:1",
		"rewritten": "rewrite.example.test/app/webapp:1",
		"badpass":   "badpass.example.test/kedge/webapp:1",
	} {
		if _, err := n.kubectl("run", pod, "--image="+img, "--restart=Never"); err != nil {
			t.Fatal(err)
		}
	}
	for _, pod := range []string{"mirrored", "rewritten"} {
		if out, err := n.kubectl("wait", "--for=condition=Ready", "pod/"+pod, "--timeout=120s"); err != nil {
			t.Fatalf("pod %s: %v\n%s\n%s\nregistry requests:\n%s", pod, err, out, n.describe("pod "+pod), reg.requests())
		}
	}
	t.Logf("both pods Ready %s after the node", time.Since(nodeReady).Round(100*time.Millisecond))

	// The rewritten pull asked the registry for mirrored/webapp, and the
	// image kept the name the pod gave.
	seen := reg.requests()
	for _, want := range []string{"0 HEAD /v2/kedge/webapp/manifests/1", "0 HEAD /v2/mirrored/webapp/manifests/1"} {
		if !strings.Contains(seen, want) {
			t.Errorf("the registry never saw %q:\n%s", want, seen)
		}
	}
	if strings.Contains(seen, "/v2/app/webapp/") {
		t.Errorf("the rewritten name was not used:\n%s", seen)
	}
	if got := must(n.kubectl("get", "pod", "rewritten", "-o", "jsonpath={.status.containerStatuses[0].image}")); got != "rewrite.example.test/app/webapp:1" {
		t.Errorf("rewritten pod's image = %q", got)
	}
	out, code := runKedge(t, n.bin, nil, "ctr", "images", "ls", "-q")
	if code != 0 || !strings.Contains(out, "rewrite.example.test/app/webapp:1") || !strings.Contains(out, "registry.example.test/kedge/webapp:1") || strings.Contains(out, "kedge-rewrite.invalid") {
		t.Errorf("kedge ctr images ls: exit %d\n%s", code, out)
	}

	// The wrong password: a pull error whose Event names the registry.
	events := eventually(t, 90*time.Second, func() (string, bool) {
		out, _ := n.kubectl("get", "events", "--field-selector", "involvedObject.name=badpass,reason=Failed", "-o", "jsonpath={.items[*].message}")
		return out, strings.Contains(out, "401")
	})
	for _, want := range []string{"badpass.example.test/kedge/webapp:1", fmt.Sprintf("localhost:%d", port), "401 Unauthorized"} {
		if !strings.Contains(events, want) {
			t.Errorf("the pull failure event does not name %q: %s", want, events)
		}
	}
	t.Logf("wrong password event: %s", events)
	if !strings.Contains(reg.requests(), "401 HEAD /v2/kedge/webapp/manifests/1") {
		t.Errorf("the registry never refused a request:\n%s", reg.requests())
	}
	n.stop(20 * time.Second)
}
