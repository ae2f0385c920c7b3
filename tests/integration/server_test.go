// Package integration runs the real kedge binary as root on temp data dirs.
package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kedge-io/kedge/pkg/join"
)

// TestServerLifecycle boots `kedge server --disable-agent`, uses the API,
// stops it with SIGTERM and restarts it on the same data dir.
func TestServerLifecycle(t *testing.T) {
	n := newNode(t)
	n.start("--disable-agent")
	took := n.waitReady(3 * time.Minute)
	t.Logf("API ready: %s after exec (kedge's own measure), %s as seen by the test", n.sinceExec(), took.Round(time.Millisecond))

	if _, err := n.kubectl("create", "namespace", "it"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.kubectl("-n", "it", "create", "configmap", "survivor", "--from-literal=key=value"); err != nil {
		t.Fatal(err)
	}

	// One process: every component runs in it, no helper processes.
	if kids := children(n.cmd.Process.Pid); len(kids) > 0 {
		t.Fatalf("kedge server has child processes %v; want none", kids)
	}

	// Private keys and the admin kubeconfig are 0600.
	tlsDir := filepath.Join(n.dataDir(), "server", "tls")
	keys := 0
	err := filepath.WalkDir(tlsDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".key") {
			return err
		}
		keys++
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", path, info.Mode().Perm())
		}
		return nil
	})
	if err != nil || keys < 10 {
		t.Fatalf("walk %s: %v (%d keys)", tlsDir, err, keys)
	}
	if info, err := os.Stat(n.kubeconfig); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin kubeconfig %s: %v, mode %v; want 0600", n.kubeconfig, err, info.Mode().Perm())
	}
	certs := readFiles(t, tlsDir, "server-ca.crt", "client-ca.crt", "apiserver.crt", "service-account.key")

	// A second server on the same port fails clearly and writes nothing.
	other := filepath.Join(n.dir, "other")
	out, code := runKedge(t, n.bin, nil, "server", "--disable-agent", "--data-dir", other,
		"--https-listen-port", strconv.Itoa(n.port),
		"--write-kubeconfig", filepath.Join(other, "kc.yaml"), "--config", filepath.Join(n.dir, "none.yaml"))
	if code == 0 || !strings.Contains(out, "--https-listen-port") || !strings.Contains(out, "already in use") {
		t.Fatalf("second instance: exit %d, output:\n%s\nwant a non-zero exit naming --https-listen-port and 'already in use'", code, out)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Fatalf("second instance created %s (err %v); a refused start must change nothing", other, err)
	}

	// The join token: 0600, carries this CA's hash; a joining node that
	// fetches the CA with it succeeds, one with another hash is refused.
	tokenFile := filepath.Join(n.dataDir(), "server", "token")
	if info, err := os.Stat(tokenFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("token file %s: %v, mode %v; want 0600", tokenFile, err, info.Mode().Perm())
	}
	raw, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := join.Parse(strings.TrimSpace(string(raw)))
	if err != nil || !tok.Pinned() || tok.CAHash != join.CAHash(certs["server-ca.crt"]) {
		t.Fatalf("token %v, %v: want one pinned to server-ca.crt", tok, err)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d", n.port)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if ca, err := join.FetchCA(t.Context(), url, tok, log); err != nil || !bytes.Equal(ca, certs["server-ca.crt"]) {
		t.Fatalf("FetchCA with the cluster's token: %v", err)
	}
	wrong := tok
	wrong.CAHash = strings.Repeat("0", 64)
	var mismatch *join.CAMismatchError
	if _, err := join.FetchCA(t.Context(), url, wrong, log); !errors.As(err, &mismatch) {
		t.Fatalf("FetchCA with a wrong CA hash: %v, want a CA mismatch", err)
	}

	time.Sleep(15 * time.Second)
	t.Logf("RSS after ~15 s idle: %.0f MiB", n.rssMiB())

	stopped := n.stop(10 * time.Second)
	t.Logf("SIGTERM to exit: %s", stopped.Round(time.Millisecond))
	if !strings.Contains(n.log.String(), "kedge server stopped") || !strings.Contains(n.log.String(), `component=etcd took=`) {
		t.Fatalf("no clean shutdown (etcd stop) in the log:\n%s", tail(n.log.String(), 3000))
	}

	// Restart on the same data dir: same cluster, same certificates.
	n.start("--disable-agent")
	took = n.waitReady(3 * time.Minute)
	t.Logf("restart: API ready %s after exec, %s as seen by the test", n.sinceExec(), took.Round(time.Millisecond))
	got, err := n.kubectl("-n", "it", "get", "configmap", "survivor", "-o", "jsonpath={.data.key}")
	if err != nil || got != "value" {
		t.Fatalf("configmap after restart = %q, %v; want value", got, err)
	}
	for name, before := range certs {
		after := readFiles(t, tlsDir, name)[name]
		if !bytes.Equal(before, after) {
			t.Errorf("%s changed across restart", name)
		}
	}
	n.stop(10 * time.Second)

	// The cluster's secret cannot change silently.
	out, code = runKedge(t, n.bin, nil, append(n.args("--disable-agent"), "--token", "another-secret")...)
	if code == 0 || !strings.Contains(out, "--token") {
		t.Fatalf("restart with another --token: exit %d\n%s", code, out)
	}
}

// TestBadInput checks that wrong flags, config files and users are refused
// with an error naming the culprit, before anything is written.
func TestBadInput(t *testing.T) {
	bin := kedgeBin(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := write("empty.yaml", "")
	base := []string{"server", "--disable-agent", "--data-dir", dataDir, "--write-kubeconfig", filepath.Join(dir, "kc.yaml")}
	cases := []struct {
		name string
		args []string
		attr *syscall.SysProcAttr
		want []string
	}{
		{"invalid cluster CIDR", []string{"--config", empty, "--cluster-cidr", "10.42.0.0/33"}, nil, []string{"--cluster-cidr", "invalid CIDR"}},
		{"malformed token", []string{"--config", empty, "--token", "KEDGE1nothex::secret"}, nil, []string{"--token"}},
		{"DNS outside service CIDR", []string{"--config", empty, "--cluster-dns", "10.99.0.10"}, nil, []string{"--cluster-dns", "--service-cidr"}},
		{"malformed config file", []string{"--config", write("bad.yaml", "cluster-cidr: [unclosed\n")}, nil, []string{"bad.yaml", "malformed"}},
		{"unknown config key", []string{"--config", write("unknown.yaml", "cluster-cidr: 10.42.0.0/16\nclustr-dns: 10.43.0.10\n")}, nil, []string{"unknown.yaml", `"clustr-dns"`, "unknown key"}},
		{"invalid value in config file", []string{"--config", write("badval.yaml", "service-cidr: nonsense\n")}, nil, []string{"--service-cidr", "nonsense"}},
		{"missing config file", []string{"--config", filepath.Join(dir, "absent.yaml")}, nil, []string{"--config", "absent.yaml"}},
		{"unknown registries key", []string{"--config", empty, "--private-registry", write("reg.yaml", "mirrors:\n  docker.io:\n    endpoints: [https://m]\n")}, nil, []string{"--private-registry", "reg.yaml", `line 3: unknown key "endpoints"`}},
		{"missing registries file", []string{"--config", write("regkey.yaml", "private-registry: "+filepath.Join(dir, "absent-reg.yaml")+"\n")}, nil, []string{"--private-registry", "absent-reg.yaml", "no such file"}},
		{"unreadable config file", []string{"--config", filepath.Join(dir, "empty.yaml")},
			&syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}, []string{"empty.yaml", "permission denied"}},
		{"not root", []string{"--config", "/dev/null"},
			&syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}, []string{"must run as root"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runKedge(t, bin, tc.attr, append(append([]string{}, base...), tc.args...)...)
			if code == 0 {
				t.Fatalf("exit 0, want failure; output:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Fatalf("%s exists after a refused start (err %v)", dataDir, err)
			}
		})
	}
}

func readFiles(t *testing.T, dir string, names ...string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	return out
}
