package pki

import (
	"crypto/x509"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// testTime is the fixed clock of the tests.
func testTime() time.Time { return time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC) }

// clock returns a Config.Now that always says t.
func clock(t time.Time) func() time.Time { return func() time.Time { return t } }

// testConfig returns a Config in a fresh, not yet existing directory.
func testConfig(t *testing.T) Config {
	t.Helper()
	return Config{
		Dir:           filepath.Join(t.TempDir(), "server", "tls"),
		ClusterDomain: "cluster.local",
		ServiceIP:     net.ParseIP("10.43.0.1"),
		// A node IP, a --tls-san IP, a --tls-san DNS name, and duplicates
		// of built-in names in other spellings.
		SANs:     []string{"192.168.1.10", "203.0.113.5", "api.example.com", "LOCALHOST", "127.0.0.1", "api.example.com"},
		NodeName: "node-1",
		Now:      clock(testTime()),
	}
}

// generate runs Generate and fails the test on error.
func generate(t *testing.T, cfg Config) Bundle {
	t.Helper()
	b, err := Generate(cfg)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return b
}

// readCert parses the certificate at path.
func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := parseCert(data)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return cert
}

// snapshot returns the content of every file under dir, by relative path.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// changed returns the sorted relative paths whose content differs between
// two snapshots, including files that appeared or disappeared.
func changed(before, after map[string]string) []string {
	var out []string
	for name, data := range after {
		if old, ok := before[name]; !ok || old != data {
			out = append(out, name)
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// leafCase is one leaf certificate of a Bundle and what it must look like.
type leafCase struct {
	name      string
	cert, key string
	ca        string
	cn        string
	orgs      []string
	usages    []x509.ExtKeyUsage
}

// leafCases lists every leaf certificate of b.
func leafCases(b Bundle) []leafCase {
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	masters := []string{"system:masters"}
	return []leafCase{
		{"apiserver", b.APIServerCert, b.APIServerKey, b.ServerCA, "kube-apiserver", nil, server},
		{"apiserver-kubelet-client", b.APIServerKubeletClientCert, b.APIServerKubeletClientKey, b.ClientCA, "system:kube-apiserver", masters, client},
		{"admin", b.AdminCert, b.AdminKey, b.ClientCA, "system:admin", masters, client},
		{"controller-manager", b.ControllerManagerCert, b.ControllerManagerKey, b.ClientCA, "system:kube-controller-manager", nil, client},
		{"scheduler", b.SchedulerCert, b.SchedulerKey, b.ClientCA, "system:kube-scheduler", nil, client},
		{"controller-manager-serving", b.ControllerManagerServingCert, b.ControllerManagerServingKey, b.ServerCA, "kube-controller-manager", nil, server},
		{"scheduler-serving", b.SchedulerServingCert, b.SchedulerServingKey, b.ServerCA, "kube-scheduler", nil, server},
		{"kube-proxy", b.KubeProxyCert, b.KubeProxyKey, b.ClientCA, "system:kube-proxy", nil, client},
		{"supervisor", b.SupervisorCert, b.SupervisorKey, b.ClientCA, "system:kedge-supervisor", masters, client},
		{"metrics-server", b.MetricsServerCert, b.MetricsServerKey, b.ServerCA, "metrics-server", nil, server},
		{"metrics-server-client", b.MetricsServerClientCert, b.MetricsServerClientKey, b.ClientCA, "system:kedge-metrics-server", nil, client},
		{"proxy-client", b.ProxyClientCert, b.ProxyClientKey, b.RequestHeaderCA, "system:auth-proxy", nil, client},
		{"etcd-server", b.EtcdServerCert, b.EtcdServerKey, b.EtcdServerCA, "etcd-server", nil, both},
		{"etcd-peer", b.EtcdPeerCert, b.EtcdPeerKey, b.EtcdPeerCA, "etcd-peer", nil, both},
		{"etcd-client", b.EtcdClientCert, b.EtcdClientKey, b.EtcdServerCA, "etcd-client", nil, client},
	}
}

// caCase is one CA of a Bundle.
type caCase struct {
	cert, key, prefix string
}

// caCases lists every CA of b.
func caCases(b Bundle) []caCase {
	return []caCase{
		{b.ServerCA, b.ServerCAKey, "kedge-server-ca@"},
		{b.ClientCA, b.ClientCAKey, "kedge-client-ca@"},
		{b.RequestHeaderCA, b.RequestHeaderCAKey, "kedge-request-header-ca@"},
		{b.EtcdServerCA, b.EtcdServerCAKey, "etcd-server-ca@"},
		{b.EtcdPeerCA, b.EtcdPeerCAKey, "etcd-peer-ca@"},
	}
}

// relPaths returns the paths relative to b.Dir, sorted.
func relPaths(t *testing.T, b Bundle, paths ...string) []string {
	t.Helper()
	set := map[string]bool{}
	for _, p := range paths {
		rel, err := filepath.Rel(b.Dir, p)
		if err != nil {
			t.Fatal(err)
		}
		set[rel] = true
	}
	return slices.Sorted(maps.Keys(set))
}
