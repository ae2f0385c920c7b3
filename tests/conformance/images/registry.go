package images

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Registry is go-containerregistry's registry (the OCI distribution API;
// manifests in memory, blobs on disk) over HTTPS with a certificate from a
// CA of its own. It serves the stand-ins under their repository paths
// (e2e-test-images/agnhost, pause, …), so that a node with it as a mirror of
// registry.k8s.io pulls them by their upstream names, also with
// imagePullPolicy: Always. Anyone may pull; pushing is meant for Push.
type Registry struct {
	// Addr is the host:port it serves on.
	Addr string
	// CAFile is the PEM file of the CA that signed its certificate.
	CAFile string

	srv  *http.Server
	pool *x509.CertPool

	mu     sync.Mutex
	misses map[string]int // manifests asked for and not there
}

// Serve starts a registry on addr (e.g. "172.31.250.1:0") with a
// certificate for its IP, keeping its blobs and CA file in dir.
func Serve(addr, dir string) (*Registry, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("registry address %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("registry address %q: want an IP address", addr)
	}
	blobs := filepath.Join(dir, "blobs")
	if err := os.MkdirAll(blobs, 0o700); err != nil {
		return nil, err
	}
	cert, caPEM, err := serverCert(ip)
	if err != nil {
		return nil, err
	}
	r := &Registry{CAFile: filepath.Join(dir, "registry-ca.crt"), pool: x509.NewCertPool(), misses: map[string]int{}}
	r.pool.AppendCertsFromPEM(caPEM)
	if err := os.WriteFile(r.CAFile, caPEM, 0o644); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	r.Addr = ln.Addr().String()
	api := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithBlobHandler(registry.NewDiskBlobHandler(blobs)))
	r.srv = &http.Server{Handler: r.record(api), ReadHeaderTimeout: 30 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = r.srv.ServeTLS(ln, "", "") }()
	return r, nil
}

// record wraps h to note the manifests asked for that are not there.
func (r *Registry) record(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, req)
		if sw.code == http.StatusNotFound && strings.Contains(req.URL.Path, "/manifests/") {
			ref := strings.Replace(strings.TrimPrefix(req.URL.Path, "/v2/"), "/manifests/", ":", 1)
			if ns := req.URL.Query().Get("ns"); ns != "" {
				ref = ns + "/" + ref
			}
			r.mu.Lock()
			r.misses[ref]++
			r.mu.Unlock()
		}
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Misses lists the images nodes asked for that the registry does not
// have ("registry.k8s.io/e2e-test-images/x:1", with the upstream registry
// when the puller named it), sorted.
func (r *Registry) Misses() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for ref := range r.misses {
		out = append(out, ref)
	}
	sort.Strings(out)
	return out
}

// Push uploads each image as <Addr>/<its repository path>:<tag> with the
// distribution API's own requests (blobs, then the manifest); a blob the
// registry has already is not sent again.
func (r *Registry) Push(ctx context.Context, imgs []Image) error {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: r.pool, MinVersion: tls.VersionTLS12}
	client := &http.Client{Transport: tr}
	for _, img := range imgs {
		up, err := name.NewTag(img.Ref, name.StrictValidation)
		if err != nil {
			return err
		}
		if err := r.push(ctx, client, up.RepositoryStr(), up.TagStr(), img.Image); err != nil {
			return fmt.Errorf("push %s to %s: %w", img.Ref, r.Addr, err)
		}
	}
	return nil
}

// push uploads img as repo:tag.
func (r *Registry) push(ctx context.Context, client *http.Client, repo, tag string, img v1.Image) error {
	base := "https://" + r.Addr + "/v2/" + repo
	do := func(method, url, contentType string, body io.Reader, want int) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, url, body)
		if err != nil {
			return nil, err
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != want {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
			return nil, fmt.Errorf("%s %s: %s %s", method, url, resp.Status, msg)
		}
		return resp, nil
	}
	type blob struct {
		digest v1.Hash
		open   func() (io.ReadCloser, error)
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var blobs []blob
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		blobs = append(blobs, blob{d, l.Compressed})
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	blobs = append(blobs, blob{cfgName, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(cfg)), nil }})
	for _, b := range blobs {
		if _, err := do(http.MethodHead, base+"/blobs/"+b.digest.String(), "", nil, http.StatusOK); err == nil {
			continue
		}
		resp, err := do(http.MethodPost, base+"/blobs/uploads/", "", nil, http.StatusAccepted)
		if err != nil {
			return err
		}
		u, err := url.Parse(base)
		if err != nil {
			return err
		}
		target, err := u.Parse(resp.Header.Get("Location"))
		if err != nil {
			return err
		}
		q := target.Query()
		q.Set("digest", b.digest.String())
		target.RawQuery = q.Encode()
		rc, err := b.open()
		if err != nil {
			return err
		}
		_, err = do(http.MethodPut, target.String(), "application/octet-stream", rc, http.StatusCreated)
		rc.Close()
		if err != nil {
			return err
		}
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	_, err = do(http.MethodPut, base+"/manifests/"+tag, string(mt), bytes.NewReader(manifest), http.StatusCreated)
	return err
}

// Close stops the registry.
func (r *Registry) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serverCert makes a CA and a server certificate for ip signed by it (both
// for a day), and returns the certificate and the CA's PEM.
func serverCert(ip net.IP) (tls.Certificate, []byte, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kedge conformance registry CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kedge conformance registry"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{ip},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}
