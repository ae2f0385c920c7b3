package supervisor

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kedge-io/kedge/pkg/pki"
)

func TestNodeJoin(t *testing.T) {
	ca, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	kube := fake.NewClientset()
	s, err := New(Config{
		CACertFile: ca.ServerCA, Secret: "s3cret", AgentSecret: "agent-s3cret", CA: ca,
		Cluster:   Cluster{ClusterCIDR: "10.42.0.0/16", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local", Servers: []string{"https://192.0.2.1:6443"}},
		NewClient: func() (kubernetes.Interface, error) { return kube, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Wrap(http.NotFoundHandler()))
	defer srv.Close()
	join := func(secret string, req NodeRequest) (int, []byte) {
		body, _ := json.Marshal(req)
		r, _ := http.NewRequest(http.MethodPost, srv.URL+NodePath, bytes.NewReader(body))
		r.SetBasicAuth("node", secret)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	req := NodeRequest{Name: "w1", Password: "0123456789abcdef0123", IPs: []string{"192.0.2.7"}}
	if code, _ := join("wrong", req); code != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d, want 401", code)
	}
	code, body := join("s3cret", req)
	if code != http.StatusOK {
		t.Fatalf("first join: %d %s", code, body)
	}
	var resp NodeResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(resp.Files["kubelet-client.crt"])
	if block == nil {
		t.Fatalf("no kubelet-client.crt in %v", len(resp.Files))
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || cert.Subject.CommonName != "system:node:w1" {
		t.Fatalf("kubelet client cert %v, %v", cert.Subject, err)
	}
	if resp.ClusterCIDR != "10.42.0.0/16" || resp.ClusterDNS != "10.43.0.10" || len(resp.Servers) != 1 || len(resp.Files["kubelet-serving.key"]) == 0 {
		t.Fatalf("response = %+v", resp)
	}
	if code, _ := join("s3cret", req); code != http.StatusOK {
		t.Fatalf("rejoin with the same node password: %d", code)
	}
	if code, body := join("agent-s3cret", req); code != http.StatusOK {
		t.Fatalf("rejoin with the agent token: %d %s", code, body)
	}
	other := req
	other.Password = "another-machine-password"
	code, body = join("s3cret", other)
	if code != http.StatusForbidden || !strings.Contains(string(body), "--node-name") {
		t.Fatalf("same name from another machine: %d %s; want 403 naming --node-name", code, body)
	}
	bad := req
	bad.Name = "Bad_Name"
	if code, _ := join("s3cret", bad); code != http.StatusBadRequest {
		t.Fatalf("bad node name: %d, want 400", code)
	}
}
