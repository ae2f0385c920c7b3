package supervisor

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kedge-io/kedge/pkg/pki"
)

// TestNodeRenewByCertificate: a node that joined renews its certificates
// with its kubelet client certificate and node password, no token; another
// node's certificate or one of another CA is refused.
func TestNodeRenewByCertificate(t *testing.T) {
	ca, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		CACertFile: ca.ServerCA, Secret: "s3cret", CA: ca,
		Cluster:   Cluster{ClusterCIDR: "10.42.0.0/16", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local"},
		NewClient: func() (kubernetes.Interface, error) { return fake.NewClientset(), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(s.Wrap(http.NotFoundHandler()))
	serving, err := tls.LoadX509KeyPair(ca.APIServerCert, ca.APIServerKey)
	if err != nil {
		t.Fatal(err)
	}
	// As the apiserver: ask for a client certificate, verify none.
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serving}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	defer srv.Close()
	caPEM, _ := os.ReadFile(ca.ServerCA)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)

	post := func(cert *tls.Certificate, secret string, req NodeRequest) (int, string) {
		cfg := &tls.Config{RootCAs: roots}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		body, _ := json.Marshal(req)
		r, _ := http.NewRequest(http.MethodPost, srv.URL+NodePath, bytes.NewReader(body))
		if secret != "" {
			r.SetBasicAuth("node", secret)
		}
		resp, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	req := NodeRequest{Name: "w1", Password: "0123456789abcdef0123", IPs: []string{"192.0.2.7"}}
	if code, body := post(nil, "s3cret", req); code != http.StatusOK {
		t.Fatalf("join: %d %s", code, body)
	}
	nodeCerts := func(name string, bundle pki.Bundle) *tls.Certificate {
		nb, err := pki.IssueNode(bundle, pki.NodeConfig{Dir: t.TempDir(), NodeName: name})
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.LoadX509KeyPair(nb.KubeletClientCert, nb.KubeletClientKey)
		if err != nil {
			t.Fatal(err)
		}
		return &pair
	}
	w1 := nodeCerts("w1", ca)
	if code, body := post(w1, "", req); code != http.StatusOK || !strings.Contains(body, "kubelet-serving.crt") {
		t.Fatalf("renew with the node certificate: %d %s", code, body)
	}
	if code, body := post(nil, "", req); code != http.StatusUnauthorized {
		t.Fatalf("neither token nor certificate: %d %s", code, body)
	}
	// A certificate that is not this node's counts for nothing: the token
	// (absent here) must then be valid.
	if code, body := post(nodeCerts("w2", ca), "", req); code != http.StatusUnauthorized || !strings.Contains(body, "token's secret is wrong") {
		t.Fatalf("another node's certificate: %d %s", code, body)
	}
	other, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := post(nodeCerts("w1", other), "", req); code != http.StatusUnauthorized || !strings.Contains(body, "token's secret is wrong") {
		t.Fatalf("a certificate of another CA: %d %s", code, body)
	}
	wrongPassword := req
	wrongPassword.Password = "another-machine-password"
	if code, body := post(w1, "", wrongPassword); code != http.StatusForbidden {
		t.Fatalf("the node certificate with another password: %d %s", code, body)
	}
}
