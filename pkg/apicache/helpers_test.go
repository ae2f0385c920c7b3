package apicache

import (
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testCA is a CA for the tests' certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(dir, name+".crt")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, file: file}
}

// issue writes a leaf (client, or server for 127.0.0.1) and returns its files.
func (ca *testCA) issue(t *testing.T, dir, cn string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{"system:nodes"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, cn+".crt"), filepath.Join(dir, cn+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// apiserver answers the requests of a kubelet's pod source over TLS, as
// kube-apiserver does, from pods it holds: LIST, WATCH (with initial events,
// or from a resourceVersion: too old gets 410), token requests. It can be
// stopped and started again on the same address.
type apiserver struct {
	t        *testing.T
	addr     string
	cert     tls.Certificate
	mu       sync.Mutex
	rv       int
	pods     map[string]corev1.Pod
	srv      *http.Server
	requests int
}

func newAPIServer(t *testing.T, ca *testCA, dir string) *apiserver {
	certFile, keyFile := ca.issue(t, dir, "apiserver", true)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	a := &apiserver{t: t, cert: cert, pods: map[string]corev1.Pod{}, rv: 100}
	a.start("127.0.0.1:0")
	t.Cleanup(a.stop)
	return a
}

func (a *apiserver) start(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		a.t.Fatal(err)
	}
	a.addr = ln.Addr().String()
	a.srv = &http.Server{Handler: a, TLSConfig: &tls.Config{Certificates: []tls.Certificate{a.cert}, ClientAuth: tls.RequireAnyClientCert}}
	go func() { _ = a.srv.ServeTLS(ln, "", "") }()
}

func (a *apiserver) stop() { _ = a.srv.Close() }

// setPod adds or (nil spec) deletes a pod.
func (a *apiserver) setPod(name string, del bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rv++
	if del {
		delete(a.pods, name)
		return
	}
	a.pods[name] = corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, ResourceVersion: strconv.Itoa(a.rv)},
		Spec:       corev1.PodSpec{NodeName: "n1"}}
}

func (a *apiserver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.requests++
	rv := strconv.Itoa(a.rv)
	var items []corev1.Pod
	for _, p := range a.pods {
		items = append(items, p)
	}
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	q := r.URL.Query()
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") && strings.HasPrefix(r.URL.Path, "/api/v1/pods") {
		// As kube-apiserver 1.37 does for watch-list streams and large
		// answers: gzip, a member per flush.
		w.Header().Set("Content-Encoding", "gzip")
		gw := &gzipFlusher{w: w}
		defer gw.Flush()
		w = gw
	}
	switch {
	case r.URL.Path == "/readyz":
		_, _ = w.Write([]byte("ok"))
	case r.URL.Path == "/api/v1/pods" && q.Get("watch") == "true":
		enc := json.NewEncoder(w)
		if q.Get("sendInitialEvents") == "true" {
			for i := range items {
				_ = enc.Encode(map[string]any{"type": "ADDED", "object": items[i]})
			}
			_ = enc.Encode(map[string]any{"type": "BOOKMARK", "object": map[string]any{"kind": "Pod", "apiVersion": "v1",
				"metadata": map[string]any{"resourceVersion": rv, "annotations": map[string]string{metav1.InitialEventsAnnotationKey: "true"}}}})
		} else if q.Get("resourceVersion") != rv {
			_ = enc.Encode(map[string]any{"type": "ERROR", "object": metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status: metav1.StatusFailure, Code: http.StatusGone, Reason: metav1.StatusReasonExpired, Message: "too old resource version"}})
			return
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	case r.URL.Path == "/api/v1/pods":
		_ = json.NewEncoder(w).Encode(corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, ListMeta: metav1.ListMeta{ResourceVersion: rv}, Items: items})
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/namespaces/default/serviceaccounts/default/token":
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(authnv1.TokenRequest{TypeMeta: metav1.TypeMeta{Kind: "TokenRequest", APIVersion: "authentication.k8s.io/v1"},
			Status: authnv1.TokenRequestStatus{Token: "tok-" + rv, ExpirationTimestamp: metav1.NewTime(time.Now().Add(time.Hour))}})
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
	}
}

// gzipFlusher gzips what is written to w, ending a gzip member at every
// Flush, as the apiserver's watch writer does.
type gzipFlusher struct {
	w  http.ResponseWriter
	gz *gzip.Writer
}

func (g *gzipFlusher) Header() http.Header  { return g.w.Header() }
func (g *gzipFlusher) WriteHeader(code int) { g.w.WriteHeader(code) }

func (g *gzipFlusher) Write(b []byte) (int, error) {
	if g.gz == nil {
		g.gz = gzip.NewWriter(g.w)
	}
	return g.gz.Write(b)
}

// Flush sends what was written (a sync flush, which a reader decompresses
// at once) and ends the gzip member.
func (g *gzipFlusher) Flush() {
	if g.gz != nil {
		_ = g.gz.Flush()
		_ = g.gz.Close()
		g.gz = nil
	}
	g.w.(http.Flusher).Flush()
}
