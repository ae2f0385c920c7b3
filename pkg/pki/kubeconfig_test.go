package pki

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

func TestWriteKubeconfig(t *testing.T) {
	b := generate(t, testConfig(t))
	dir := filepath.Join(t.TempDir(), "etc", "kedge")
	path := filepath.Join(dir, "kedge.yaml")
	opts := KubeconfigOptions{
		Server:   "https://127.0.0.1:6443",
		CAFile:   b.ServerCA,
		CertFile: b.AdminCert,
		KeyFile:  b.AdminKey,
		User:     "default",
	}
	if err := WriteKubeconfig(path, 0o600, opts); err != nil {
		t.Fatalf("WriteKubeconfig: %v", err)
	}
	assertMode(t, path, 0o600)
	assertMode(t, dir, 0o700)

	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatalf("LoadFromFile: %v", err)
	}
	if cfg.CurrentContext != "default" {
		t.Errorf("current context = %q, want default", cfg.CurrentContext)
	}
	ctx := cfg.Contexts["default"]
	if ctx == nil || ctx.Cluster != "default" || ctx.AuthInfo != "default" {
		t.Fatalf("context default = %+v", ctx)
	}
	cluster := cfg.Clusters["default"]
	if cluster == nil || cluster.Server != opts.Server {
		t.Fatalf("cluster default = %+v, want server %s", cluster, opts.Server)
	}
	assertData(t, "certificate-authority-data", cluster.CertificateAuthorityData, b.ServerCA)
	user := cfg.AuthInfos["default"]
	if user == nil {
		t.Fatal("no user default")
	}
	assertData(t, "client-certificate-data", user.ClientCertificateData, b.AdminCert)
	assertData(t, "client-key-data", user.ClientKeyData, b.AdminKey)
	if user.ClientCertificate != "" || user.ClientKey != "" || cluster.CertificateAuthority != "" {
		t.Error("kubeconfig refers to files instead of embedding them")
	}

	// Writing again with another mode and user replaces the file.
	opts.User = "kube-proxy"
	opts.CertFile, opts.KeyFile = b.KubeProxyCert, b.KubeProxyKey
	if err := WriteKubeconfig(path, 0o640, opts); err != nil {
		t.Fatalf("WriteKubeconfig again: %v", err)
	}
	assertMode(t, path, 0o640)
	if cfg, err = clientcmd.LoadFromFile(path); err != nil {
		t.Fatal(err)
	}
	if cfg.Contexts["default"].AuthInfo != "kube-proxy" || len(cfg.AuthInfos) != 1 {
		t.Errorf("users = %v, context = %+v", cfg.AuthInfos, cfg.Contexts["default"])
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only kedge.yaml (no temp files)", len(entries))
	}
}

func TestWriteKubeconfigErrors(t *testing.T) {
	b := generate(t, testConfig(t))
	path := filepath.Join(t.TempDir(), "kubeconfig")
	missing := filepath.Join(t.TempDir(), "missing.crt")
	good := KubeconfigOptions{Server: "https://127.0.0.1:6443", CAFile: b.ServerCA, CertFile: b.AdminCert, KeyFile: b.AdminKey}
	for name, tc := range map[string]struct {
		mutate func(*KubeconfigOptions)
		want   string
	}{
		"no server":    {func(o *KubeconfigOptions) { o.Server = "" }, "pki: kubeconfig " + path + ": server URL is required"},
		"bad server":   {func(o *KubeconfigOptions) { o.Server = "127.0.0.1:6443" }, "pki: kubeconfig " + path + `: invalid server URL "127.0.0.1:6443"`},
		"no CA":        {func(o *KubeconfigOptions) { o.CAFile = "" }, "pki: kubeconfig " + path + ": CA file is required"},
		"missing CA":   {func(o *KubeconfigOptions) { o.CAFile = missing }, "pki: read " + missing + ": "},
		"key only":     {func(o *KubeconfigOptions) { o.CertFile = "" }, "pki: kubeconfig " + path + ": certificate and key files go together"},
		"key mismatch": {func(o *KubeconfigOptions) { o.KeyFile = b.SchedulerKey }, "pki: " + b.SchedulerKey + " does not match " + b.AdminCert},
	} {
		t.Run(name, func(t *testing.T) {
			o := good
			tc.mutate(&o)
			err := WriteKubeconfig(path, 0o600, o)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("failed call left %s behind", path)
			}
		})
	}
}

// assertMode checks the permission bits of path.
func assertMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != want {
		t.Errorf("%s: mode %o, want %o", path, got, want)
	}
}

// assertData checks that embedded kubeconfig data equals the file at path.
func assertData(t *testing.T, field string, got []byte, path string) {
	t.Helper()
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from %s", field, path)
	}
}
