package token

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/pki"
)

// TestSyncFollowsRotation: Current answers only once synced; a rotation
// rewrites the token file with the CA hash and records the old secret.
func TestSyncFollowsRotation(t *testing.T) {
	ca, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(ca.ServerCA)
	dir := t.TempDir()
	tokenFile, rotated := filepath.Join(dir, "token"), filepath.Join(dir, "token-rotated")
	if _, err := join.EnsureTokenFile(tokenFile, caPEM, "old-secret"); err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	s := NewSync(SyncConfig{
		NewClient: func() (kubernetes.Interface, error) { return client, nil },
		TokenFile: tokenFile, RotatedFile: rotated, CAFile: ca.ServerCA, FileSecret: "old-secret",
		Log: slog.New(slog.DiscardHandler),
	})
	if _, err := s.Current(); err == nil {
		t.Fatal("Current before the first sync")
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(t.Context())
	if err := s.Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	if cur, err := s.Current(); err != nil || cur != "old-secret" {
		t.Fatalf("before rotation: %q, %v", cur, err)
	}
	if err := Rotate(t.Context(), client, "new-secret", "agent-secret"); err != nil {
		t.Fatal(err)
	}
	want := join.New(caPEM, "new-secret").String()
	deadline := time.Now().Add(10 * time.Second)
	for {
		raw, _ := os.ReadFile(tokenFile)
		cur, _ := s.Current()
		if strings.TrimSpace(string(raw)) == want && cur == "new-secret" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token file %q, current %q after rotation", raw, cur)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !Retired(rotated, "old-secret") || Retired(rotated, "new-secret") {
		t.Fatal("the old secret is not recorded as retired")
	}
}
