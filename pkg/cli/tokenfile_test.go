package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("token", "KEDGE1"+strings.Repeat("a", 64)+"::s3cret\n")
	if tok, err := readTokenFile("", good); err != nil || tok != "KEDGE1"+strings.Repeat("a", 64)+"::s3cret" {
		t.Fatalf("readTokenFile = %q, %v", tok, err)
	}
	if tok, err := readTokenFile("flag-secret", ""); err != nil || tok != "flag-secret" {
		t.Fatalf("no file: %q, %v", tok, err)
	}
	for name, tc := range map[string]struct {
		token, file, want string
	}{
		"both":      {"x", good, "--token and --token-file"},
		"missing":   {"", filepath.Join(dir, "none"), "--token-file " + filepath.Join(dir, "none")},
		"empty":     {"", write("empty", " \n"), "is empty"},
		"two lines": {"", write("two", "a\nb\n"), "more than one line"},
	} {
		if _, err := readTokenFile(tc.token, tc.file); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

func TestTokenFileFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("s3cret-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &agentFlags{}
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	a.register(fs)
	if err := fs.Parse([]string{"--server", "https://10.0.0.1:6443", "--token-file", file, "--node-ip", "192.0.2.9"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.agentConfig(); err != nil || a.token != "s3cret-from-file" {
		t.Fatalf("agent: token %q, %v", a.token, err)
	}
	s := &serverFlags{}
	fs = pflag.NewFlagSet("server", pflag.ContinueOnError)
	s.register(fs)
	if err := fs.Parse([]string{"--token-file", file, "--node-ip", "192.0.2.9"}); err != nil {
		t.Fatal(err)
	}
	c, err := s.serverConfig(time.Now())
	if err != nil || c.Token != "s3cret-from-file" {
		t.Fatalf("server: token %q, %v", c.Token, err)
	}
	t.Setenv(tokenFileEnv, file)
	a = &agentFlags{}
	fs = pflag.NewFlagSet("agent", pflag.ContinueOnError)
	a.register(fs)
	_ = fs.Parse([]string{"--server", "https://10.0.0.1:6443", "--node-ip", "192.0.2.9"})
	if _, err := a.agentConfig(); err != nil || a.token != "s3cret-from-file" {
		t.Fatalf("agent with $%s: token %q, %v", tokenFileEnv, a.token, err)
	}
}

func TestTokenAndServerFromEnvironment(t *testing.T) {
	t.Setenv(tokenEnv, "s3cret-from-env")
	t.Setenv(serverEnv, "https://10.0.0.1:6443")
	a := &agentFlags{}
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	a.register(fs)
	if err := fs.Parse([]string{"--node-ip", "192.0.2.9"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.agentConfig(); err != nil || a.token != "s3cret-from-env" || a.server != "https://10.0.0.1:6443" {
		t.Fatalf("agent from $%s and $%s: token %q server %q, %v", tokenEnv, serverEnv, a.token, a.server, err)
	}
	// A flag wins; --token-file with $KEDGE_TOKEN set is no conflict.
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("s3cret-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a = &agentFlags{}
	fs = pflag.NewFlagSet("agent", pflag.ContinueOnError)
	a.register(fs)
	_ = fs.Parse([]string{"--node-ip", "192.0.2.9", "--token-file", file})
	if _, err := a.agentConfig(); err != nil || a.token != "s3cret-from-file" {
		t.Fatalf("--token-file with $%s set: token %q, %v", tokenEnv, a.token, err)
	}
}
