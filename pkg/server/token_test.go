package server

import (
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/pki"
)

func TestEnsureTokens(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: dir}
	server, tok, err := ensureTokens(cfg, ca.ServerCA, slog.New(slog.DiscardHandler))
	if err != nil || tok.Secret == "" || !tok.Pinned() {
		t.Fatalf("first start: %+v, %v", tok, err)
	}
	st, err := os.Stat(cfg.AgentTokenFile())
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("agent token file: %v, %v", st, err)
	}
	if server.Secret == tok.Secret {
		t.Fatal("the agent token's secret is the server token's")
	}
	_, again, err := ensureTokens(cfg, ca.ServerCA, slog.New(slog.DiscardHandler))
	if err != nil || again.Secret != tok.Secret {
		t.Fatalf("restart: %q, %v; want the stored secret", again.Secret, err)
	}
	// A full agent token or its bare secret is accepted again; another is refused.
	for _, given := range []string{tok.String(), tok.Secret} {
		cfg.AgentToken = given
		if _, _, err := ensureTokens(cfg, ca.ServerCA, slog.New(slog.DiscardHandler)); err != nil {
			t.Errorf("--agent-token %q: %v", given, err)
		}
	}
	cfg.AgentToken = "another-secret"
	if _, _, err := ensureTokens(cfg, ca.ServerCA, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "--agent-token") {
		t.Fatalf("another --agent-token: %v", err)
	}
	cfg.AgentToken = join.New([]byte("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"), tok.Secret).String()
	if _, _, err := ensureTokens(cfg, ca.ServerCA, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "CA hash") {
		t.Fatalf("--agent-token of another CA: %v", err)
	}
}

// TestEnsureTokensAfterACARotation: a server restarted with --token and
// --agent-token pinned to the CA that `rotate-ca` replaced starts, and its
// token files pin the new CA; a token pinned to any other CA is refused.
func TestEnsureTokensAfterACARotation(t *testing.T) {
	cfg := Config{DataDir: t.TempDir()}
	ca, err := pki.Generate(pki.Config{Dir: cfg.tlsDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	server, agent, err := ensureTokens(cfg, ca.ServerCA, quiet)
	if err != nil {
		t.Fatal(err)
	}
	oldCA, _ := os.ReadFile(ca.ServerCA)
	if err := writeCARotation(cfg, CARotation{Phase: "start", PreviousCAHashes: []string{join.CAHash(oldCA)}}); err != nil {
		t.Fatal(err)
	}
	if err := pki.StartCARotation(ca, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	cfg.Token, cfg.AgentToken = server.String(), agent.String() // the config of before the rotation
	s2, a2, err := ensureTokens(cfg, ca.ServerCA, quiet)
	if err != nil {
		t.Fatalf("restart with the old tokens: %v", err)
	}
	newCA, _ := pki.PinnedCA(ca.ServerCA)
	if s2.CAHash != join.CAHash(newCA) || a2.CAHash != join.CAHash(newCA) || s2.Secret != server.Secret || a2.Secret != agent.Secret {
		t.Errorf("tokens after the restart pin %s/%s, want the new CA %s with the same secrets", s2.CAHash, a2.CAHash, join.CAHash(newCA))
	}
	cfg.Token = join.New([]byte("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"), server.Secret).String()
	if _, _, err := ensureTokens(cfg, ca.ServerCA, quiet); err == nil || !strings.Contains(err.Error(), "CA hash") {
		t.Errorf("--token of another CA: %v", err)
	}
}
