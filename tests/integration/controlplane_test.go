package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/supervisor"
)

// TestControlPlaneControllers checks what the in-process controller-manager
// and apiserver do for a cluster: node IPAM from --cluster-cidr, CSR
// signing, RBAC denying an unprivileged user.
func TestControlPlaneControllers(t *testing.T) {
	n := newNode(t)
	n.start("--disable-agent", "--cluster-cidr", "10.77.0.0/16")
	n.waitReady(3 * time.Minute)

	// Node IPAM: a registered Node gets a /24 pod CIDR from --cluster-cidr.
	node := filepath.Join(n.dir, "node.yaml")
	write(t, node, "apiVersion: v1\nkind: Node\nmetadata:\n  name: ipam-probe\n")
	if _, err := n.kubectl("create", "-f", node); err != nil {
		t.Fatal(err)
	}
	cidr := eventually(t, 60*time.Second, func() (string, bool) {
		out, err := n.kubectl("get", "node", "ipam-probe", "-o", "jsonpath={.spec.podCIDR}")
		return out, err == nil && out != ""
	})
	_, got, err := net.ParseCIDR(cidr)
	_, want, _ := net.ParseCIDR("10.77.0.0/16")
	if ones, _ := got.Mask.Size(); err != nil || ones != 24 || !want.Contains(got.IP) {
		t.Fatalf("podCIDR %q: want a /24 inside 10.77.0.0/16", cidr)
	}

	// CSR signing: an approved client CSR is signed by the client CA.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "jane", Organization: []string{"devs"}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	req := base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	csr := filepath.Join(n.dir, "csr.yaml")
	write(t, csr, `apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: jane
spec:
  signerName: kubernetes.io/kube-apiserver-client
  usages: [client auth]
  request: `+req+"\n")
	if _, err := n.kubectl("create", "-f", csr); err != nil {
		t.Fatal(err)
	}
	if _, err := n.kubectl("certificate", "approve", "jane"); err != nil {
		t.Fatal(err)
	}
	issued := eventually(t, 60*time.Second, func() (string, bool) {
		out, err := n.kubectl("get", "csr", "jane", "-o", "jsonpath={.status.certificate}")
		return out, err == nil && out != ""
	})
	raw, err := base64.StdEncoding.DecodeString(issued)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		t.Fatal("issued certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	clientCAPEM, err := os.ReadFile(filepath.Join(n.dataDir(), "server", "tls", "client-ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(n.dataDir(), "server", "tls", "server-ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(clientCAPEM)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("issued certificate for %s does not verify against the client CA: %v", cert.Subject, err)
	}

	// RBAC: jane has no role; the admin does.
	if out, _ := n.kubectl("auth", "can-i", "list", "secrets", "-A", "--as", "jane"); !strings.HasPrefix(out, "no") {
		t.Fatalf("can-i list secrets as jane = %q, want no", out)
	}
	if out, _ := n.kubectl("auth", "can-i", "list", "secrets", "-A"); out != "yes" {
		t.Fatalf("can-i list secrets as admin = %q, want yes", out)
	}
	// Node authorization: a kubelet reads only the secrets of its own pods.
	if out, _ := n.kubectl("auth", "can-i", "get", "secret/some-secret", "-n", "kube-system", "--as", "system:node:ipam-probe", "--as-group", "system:nodes"); !strings.HasPrefix(out, "no") {
		t.Fatalf("can-i get a secret as a node = %q, want no", out)
	}
	// The supervisor shares the apiserver's port: /cacerts and /ping answer
	// without credentials, everything else is the apiserver's (401 here).
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	base := fmt.Sprintf("https://127.0.0.1:%d", n.port)
	for path, want := range map[string]string{"/cacerts": string(caPEM), "/ping": "pong"} {
		resp, err := insecure.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("GET %s = %d %q", path, resp.StatusCode, body)
		}
	}
	if resp, err := insecure.Get(base + "/api/v1/namespaces"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous GET /api/v1/namespaces = %v, %v; want 401", resp, err)
	}

	// An agent joins through the supervisor: CA pinned by the token, then
	// node certificates for its name; the same name from another machine
	// (another node password) is refused with the remedy.
	tokenRaw, err := os.ReadFile(filepath.Join(n.dataDir(), "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := join.Parse(strings.TrimSpace(string(tokenRaw)))
	if err != nil {
		t.Fatal(err)
	}
	fetched, err := join.FetchCA(t.Context(), base, tok, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sup, err := join.NewSupervisor(base, fetched, tok, join.UserNode)
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	joinAs := func(password string) (int, supervisor.NodeResponse) {
		body, _ := json.Marshal(supervisor.NodeRequest{Name: "edge-7", Password: password, IPs: []string{"192.0.2.77"}})
		resp, err := sup.Do(t.Context(), http.MethodPost, supervisor.NodePath, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out supervisor.NodeResponse
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, joined := joinAs("first-machine-password-0123")
	if code != http.StatusOK || len(joined.Files["kubelet-client.crt"]) == 0 || joined.ClusterCIDR != "10.77.0.0/16" {
		t.Fatalf("node join: %d %+v", code, joined)
	}
	if code, _ := joinAs("second-machine-password-0123"); code != http.StatusForbidden {
		t.Fatalf("same node name, other password: %d, want 403", code)
	}

	// Built-in manifests: the kube-dns Service at --cluster-dns.
	if ip, err := n.kubectl("-n", "kube-system", "get", "service", "kube-dns", "-o", "jsonpath={.spec.clusterIP}"); err != nil || ip != "10.43.0.10" {
		t.Fatalf("kube-dns clusterIP = %q, %v; want 10.43.0.10", ip, err)
	}
	// A manifest dropped into <data-dir>/server/manifests is applied.
	write(t, filepath.Join(n.dataDir(), "server", "manifests", "extra.yaml"),
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dropped-in\n  namespace: default\ndata:\n  a: b\n")
	eventually(t, 60*time.Second, func() (string, bool) {
		out, err := n.kubectl("get", "configmap", "dropped-in", "-o", "jsonpath={.data.a}")
		return out, err == nil && out == "b"
	})
	n.stop(10 * time.Second)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// eventually polls f until it reports done or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() (string, bool)) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, done := f()
		if done {
			return strings.TrimSpace(out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not done after %s; last output %q", timeout, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
