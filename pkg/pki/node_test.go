package pki

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIssueNode(t *testing.T) {
	ca, err := Generate(Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "server1"})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "agent", "tls")
	cfg := NodeConfig{Dir: dir, NodeName: "worker-1", NodeIPs: []net.IP{net.ParseIP("192.0.2.7")}}
	b, err := IssueNode(ca, cfg)
	if err != nil {
		t.Fatal(err)
	}
	roots := func(path string) *x509.CertPool {
		pool := x509.NewCertPool()
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(raw)
		return pool
	}
	client := readCert(t, b.KubeletClientCert)
	if client.Subject.CommonName != "system:node:worker-1" || len(client.Subject.Organization) != 1 || client.Subject.Organization[0] != "system:nodes" {
		t.Fatalf("kubelet client subject = %v", client.Subject)
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots(b.ClientCA), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("kubelet client cert: %v", err)
	}
	serving := readCert(t, b.KubeletServingCert)
	for _, host := range []string{"worker-1", "localhost", "127.0.0.1", "192.0.2.7"} {
		if _, err := serving.Verify(x509.VerifyOptions{DNSName: host, Roots: roots(b.ServerCA), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("kubelet serving cert for %s: %v", host, err)
		}
	}
	proxy := readCert(t, b.KubeProxyCert)
	if proxy.Subject.CommonName != "system:kube-proxy" {
		t.Fatalf("kube-proxy subject = %v", proxy.Subject)
	}
	if dns := readCert(t, b.CoreDNSCert); !strings.HasPrefix(dns.Subject.CommonName, "system:kedge-coredns:") || len(dns.Subject.Organization) != 1 || dns.Subject.Organization[0] != "system:kedge-coredns" {
		t.Fatalf("coredns subject = %v", dns.Subject)
	}
	for _, key := range []string{b.KubeletClientKey, b.KubeletServingKey, b.KubeProxyKey, b.CoreDNSKey} {
		if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, %v", key, st.Mode(), err)
		}
	}
	before := snapshot(t, dir)
	if _, err := IssueNode(ca, cfg); err != nil {
		t.Fatal(err)
	}
	for name, data := range snapshot(t, dir) {
		if before[name] != data {
			t.Errorf("%s changed on the second IssueNode", name)
		}
	}
	if _, err := IssueNode(ca, NodeConfig{Dir: dir, NodeName: "Bad_Name"}); err == nil {
		t.Fatal("IssueNode accepted an invalid node name")
	}
}
