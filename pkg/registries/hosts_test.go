package registries

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
)

// resolve is what containerd makes of the host directories under dir for
// registry: its own hosts.toml parser and resolver configuration.
func resolve(t *testing.T, dir, registry string) []docker.RegistryHost {
	t.Helper()
	hosts, err := config.ConfigureHosts(context.Background(), config.HostOptions{HostDir: config.HostDirFromRoot(dir)})(registry)
	if err != nil {
		t.Fatalf("containerd's ConfigureHosts(%s): %v", registry, err)
	}
	return hosts
}

func urls(hosts []docker.RegistryHost) []string {
	var out []string
	for _, h := range hosts {
		out = append(out, h.Scheme+"://"+h.Host+h.Path)
	}
	return out
}

func TestWriteHostDirs(t *testing.T) {
	tmp := t.TempDir()
	ca, key := writePEM(t, tmp)
	r, err := Parse([]byte(`
mirrors:
  docker.io:
    endpoint: ["https://mirror.example.com:5000", "http://10.0.0.5:5000/some/root", "https://registry-1.docker.io"]
  registry.example.test:
    endpoint: ["https://127.0.0.1:5443"]
    rewrite: {"^x$": "y"}
  "*":
    endpoint: ["https://cache.example.com/v2"]
configs:
  "mirror.example.com:5000":
    auth: {username: kedge, password: s3cret}
    tls: {ca_file: ` + ca + `, cert_file: ` + ca + `, key_file: ` + key + `}
  "private.example.com":
    tls: {insecure_skip_verify: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	r.File = "/etc/kedge/registries.yaml"
	dir := filepath.Join(tmp, "certs.d")
	// A stale directory from an earlier start goes.
	if err := os.MkdirAll(filepath.Join(dir, "old.example.com"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteHostDirs(dir); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "_default docker.io mirror.example.com_5000_ private.example.com registry.example.test" {
		t.Errorf("host directories = %s", got)
	}

	hub := resolve(t, dir, "docker.io")
	if got := strings.Join(urls(hub), " "); got != "https://mirror.example.com:5000/v2 http://10.0.0.5:5000/some/root https://registry-1.docker.io/v2" {
		t.Errorf("docker.io hosts = %s", got)
	}
	if hub[0].Capabilities != docker.HostCapabilityPull|docker.HostCapabilityResolve {
		t.Errorf("a mirror may push: %v", hub[0].Capabilities)
	}
	if hub[2].Capabilities&docker.HostCapabilityPush == 0 {
		t.Errorf("the registry itself lost its capabilities: %v", hub[2].Capabilities)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "docker.io", HostsFile))
	for _, want := range []string{`ca = "` + ca + `"`, `client = [["` + ca + `", "` + key + `"]]`, "override_path = true", "/etc/kedge/registries.yaml"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("docker.io hosts.toml lacks %s:\n%s", want, raw)
		}
	}
	if strings.Contains(string(raw), "s3cret") {
		t.Errorf("a password in hosts.toml:\n%s", raw)
	}

	// A rewriting mirror is reached through the image proxy only.
	if got := strings.Join(urls(resolve(t, dir, "registry.example.test")), " "); got != "https://registry.example.test/v2" {
		t.Errorf("registry.example.test hosts = %s", got)
	}
	if err := r.WriteRewriteDir(dir, "registry.example.test"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(urls(resolve(t, dir, RewriteHost("registry.example.test"))), " "); got != "https://127.0.0.1:5443/v2" {
		t.Errorf("rewrite host = %s", got)
	}

	// The wildcard mirror serves any other registry; TLS of a plain host.
	if got := strings.Join(urls(resolve(t, dir, "quay.io")), " "); got != "https://cache.example.com/v2 https://quay.io/v2" {
		t.Errorf("quay.io (wildcard) hosts = %s", got)
	}
	priv := resolve(t, dir, "private.example.com")
	if tr, ok := priv[0].Client.Transport.(*http.Transport); len(priv) != 1 || !ok || !tr.TLSClientConfig.InsecureSkipVerify {
		t.Errorf("private.example.com: containerd does not skip verification: %+v", priv)
	}
	raw, _ = os.ReadFile(filepath.Join(dir, "private.example.com", HostsFile))
	if !strings.Contains(string(raw), "skip_verify = true") {
		t.Errorf("private.example.com hosts.toml:\n%s", raw)
	}

	// 0600 files in 0700 directories.
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if info.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", p, info.Mode().Perm(), want)
		}
		return nil
	})

	// Nothing configured: an empty directory (the host's certs.d is never read).
	if err := (Registries{}).WriteHostDirs(dir); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left over: %v", entries)
	}
}

func TestTOMLString(t *testing.T) {
	if got := tomlString("a\"b\\c\n"); got != `"a\"b\\c\u000A"` {
		t.Errorf("tomlString = %s", got)
	}
}
