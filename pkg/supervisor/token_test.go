package supervisor

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/token"
)

// TestJoinWithBootstrapTokensAndNodeCertificate: a created token joins an
// agent; an expired or deleted one is refused with 401 and a message that
// says so; a rotated server token replaces the old one; a node that joined
// before rejoins with its kubelet client certificate and no valid token.
func TestJoinWithBootstrapTokensAndNodeCertificate(t *testing.T) {
	ca, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	kube := fake.NewClientset()
	current, synced := "s3cret", true
	s, err := New(Config{
		CACertFile: ca.ServerCA, Secret: "s3cret", CA: ca,
		Cluster:   Cluster{ClusterCIDR: "10.42.0.0/16", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local"},
		NewClient: func() (kubernetes.Interface, error) { return kube, nil },
		ServerSecret: func() (string, error) {
			if !synced {
				return "", errors.New("not synced")
			}
			return current, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(s.Wrap(http.NotFoundHandler()))
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert} // as the apiserver asks
	srv.StartTLS()
	defer srv.Close()
	join := func(secret string, cert *tls.Certificate, req NodeRequest) (int, string, NodeResponse) {
		body, _ := json.Marshal(req)
		r, _ := http.NewRequest(http.MethodPost, srv.URL+NodePath, bytes.NewReader(body))
		r.SetBasicAuth("node", secret)
		tr := srv.Client().Transport.(*http.Transport).Clone()
		if cert != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		}
		resp, err := (&http.Client{Transport: tr}).Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var answer NodeResponse
		if resp.StatusCode == http.StatusOK {
			_ = json.Unmarshal(b, &answer)
		}
		return resp.StatusCode, strings.TrimSpace(string(b)), answer
	}
	req := NodeRequest{Name: "w1", Password: "0123456789abcdef0123", IPs: []string{"192.0.2.7"}}

	tok, err := token.Create(t.Context(), kube, token.CreateOptions{TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	code, msg, answer := join(tok.Secret, nil, req)
	if code != http.StatusOK {
		t.Fatalf("join with a created token: %d %s", code, msg)
	}
	if code, msg, _ := join(tok.Secret, nil, NodeRequest{Name: "s1x", Password: req.Password}); code != http.StatusOK {
		t.Fatalf("second agent, same token: %d %s", code, msg)
	}
	time.Sleep(2100 * time.Millisecond)
	if code, msg, _ := join(tok.Secret, nil, req); code != http.StatusUnauthorized || !strings.Contains(msg, "expired at") {
		t.Fatalf("expired token: %d %q; want 401 saying it expired", code, msg)
	}
	if err := token.Delete(t.Context(), kube, tok.ID); err != nil {
		t.Fatal(err)
	}
	if code, msg, _ := join(tok.Secret, nil, req); code != http.StatusUnauthorized || !strings.Contains(msg, "does not exist") {
		t.Fatalf("deleted token: %d %q; want 401 saying it does not exist", code, msg)
	}

	// The node's kubelet client certificate rejoins it without a token.
	cert, err := tls.X509KeyPair(answer.Files["kubelet-client.crt"], answer.Files["kubelet-client.key"])
	if err != nil {
		t.Fatal(err)
	}
	if code, msg, _ := join("no-longer-valid", &cert, req); code != http.StatusOK {
		t.Fatalf("rejoin with the node certificate: %d %s", code, msg)
	}
	other := req
	other.Name = "w2"
	if code, msg, _ := join("no-longer-valid", &cert, other); code != http.StatusUnauthorized {
		t.Fatalf("w1's certificate for w2: %d %s", code, msg)
	}
	// A certificate of another CA is no credential.
	foreign, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "x"})
	if err != nil {
		t.Fatal(err)
	}
	fcert, err := tls.LoadX509KeyPair(foreign.AdminCert, foreign.AdminKey)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := join("wrong", &fcert, req); code != http.StatusUnauthorized {
		t.Fatalf("foreign certificate: %d, want 401", code)
	}

	// Server token rotation: the old secret is refused, the new one joins;
	// before the first sync, a join is told to retry (503).
	current = "n3w-secret"
	if code, _, _ := join("s3cret", nil, req); code != http.StatusUnauthorized {
		t.Fatalf("old server token after rotation: %d, want 401", code)
	}
	if code, msg, _ := join("n3w-secret", nil, req); code != http.StatusOK {
		t.Fatalf("new server token: %d %s", code, msg)
	}
	synced = false
	if code, _, _ := join("n3w-secret", nil, req); code != http.StatusServiceUnavailable {
		t.Fatalf("before the sync: %d, want 503", code)
	}
}
