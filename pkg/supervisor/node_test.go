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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
		Settings:  Settings{ServiceCIDR: "10.43.0.0/16"},
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
	if resp.ClusterCIDR != "10.42.0.0/16" || resp.ServiceCIDR != "10.43.0.0/16" || resp.ClusterDNS != "10.43.0.10" || len(resp.Servers) != 1 || len(resp.Files["kubelet-serving.key"]) == 0 {
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

// TestNodeConfig: an agent's labels and taints are set on its Node by the
// supervisor, kept in sync on the next call, and only what the supervisor
// set is removed; the record stays out of the node's reach (its password
// Secret).
func TestNodeConfig(t *testing.T) {
	ca, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	kube := fake.NewClientset()
	s, err := New(Config{CACertFile: ca.ServerCA, Secret: "s3cret", AgentSecret: "agent-s3cret", CA: ca,
		NewClient: func() (kubernetes.Interface, error) { return kube, nil }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Wrap(http.NotFoundHandler()))
	defer srv.Close()
	post := func(req NodeConfigRequest) (int, string) {
		body, _ := json.Marshal(req)
		r, _ := http.NewRequest(http.MethodPost, srv.URL+NodeConfigPath, bytes.NewReader(body))
		r.SetBasicAuth("node", "agent-s3cret")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	pw := "0123456789abcdef0123"
	req := NodeConfigRequest{Name: "w1", Password: pw, Labels: []string{"node-role.kubernetes.io/worker=true", "site=a"}, Taints: []string{"dedicated=edge:NoSchedule"}}
	if code, body := post(req); code != http.StatusServiceUnavailable || !strings.Contains(body, "not registered") {
		t.Fatalf("before the Node exists: %d %s, want 503", code, body)
	}
	ctx := t.Context()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1", Labels: map[string]string{"site": "a"}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "admin", Effect: corev1.TaintEffectNoExecute}, {Key: "dedicated", Value: "edge", Effect: corev1.TaintEffectNoSchedule}}}}
	if _, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if code, body := post(req); code != http.StatusOK {
		t.Fatalf("apply: %d %s", code, body)
	}
	got, _ := kube.CoreV1().Nodes().Get(ctx, "w1", metav1.GetOptions{})
	if got.Labels["node-role.kubernetes.io/worker"] != "true" || len(got.Spec.Taints) != 2 {
		t.Fatalf("after apply: %v %v", got.Labels, got.Spec.Taints)
	}
	// The flags change: the role label and the dedicated taint go, the
	// administrator's taint stays.
	req.Labels, req.Taints = []string{"site=b"}, []string{"gpu:PreferNoSchedule"}
	if code, body := post(req); code != http.StatusOK {
		t.Fatalf("second apply: %d %s", code, body)
	}
	got, _ = kube.CoreV1().Nodes().Get(ctx, "w1", metav1.GetOptions{})
	if _, ok := got.Labels["node-role.kubernetes.io/worker"]; ok || got.Labels["site"] != "b" {
		t.Errorf("labels = %v", got.Labels)
	}
	var keys []string
	for _, taint := range got.Spec.Taints {
		keys = append(keys, taint.Key)
	}
	if strings.Join(keys, ",") != "admin,gpu" {
		t.Errorf("taints = %v, want admin,gpu", keys)
	}
	secret, _ := kube.CoreV1().Secrets("kube-system").Get(ctx, passwordSecret("w1"), metav1.GetOptions{})
	if !strings.Contains(string(secret.Data[appliedKey]), "gpu:PreferNoSchedule") {
		t.Errorf("record = %s", secret.Data[appliedKey])
	}
	// Refusals: a label only administrators set, a wrong password.
	bad := req
	bad.Labels = []string{"node-restriction.kubernetes.io/x=y"}
	if code, body := post(bad); code != http.StatusBadRequest || !strings.Contains(body, "--node-label") {
		t.Errorf("restricted label: %d %s", code, body)
	}
	bad = req
	bad.Password = "another-password-0123"
	if code, _ := post(bad); code != http.StatusForbidden {
		t.Errorf("wrong node password: %d, want 403", code)
	}
}
