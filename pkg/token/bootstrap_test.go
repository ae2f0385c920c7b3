package token

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
)

func TestCreateListCheckDelete(t *testing.T) {
	ctx := t.Context()
	client := fake.NewClientset()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tok, err := Create(ctx, client, CreateOptions{TTL: time.Hour, Description: "site 7", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if !IsBootstrapToken(tok.Secret) || !strings.HasPrefix(tok.Secret, tok.ID+".") {
		t.Fatalf("secret %q of token %q", tok.Secret, tok.ID)
	}
	s, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, "bootstrap-token-"+tok.ID, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Type != bootstrapapi.SecretTypeBootstrapToken || string(s.Data["expiration"]) != "2026-01-02T04:04:05Z" ||
		string(s.Data["usage-bootstrap-kedge-agent"]) != "true" || string(s.Data["description"]) != "site 7" || s.Data["usage-bootstrap-authentication"] != nil {
		t.Fatalf("secret: type %s, data %q", s.Type, s.Data)
	}
	infos, err := List(ctx, client)
	if err != nil || len(infos) != 1 || infos[0].ID != tok.ID || !infos[0].Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("list: %+v, %v", infos, err)
	}
	if err := Check(ctx, client, tok.Secret, UsageAgent, now); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	var usage *UsageError
	if err := Check(ctx, client, tok.Secret, UsageServer, now); !errors.As(err, &usage) || !strings.Contains(err.Error(), "--usages server") {
		t.Fatalf("agent token for a server: %v", err)
	}
	if err := Check(ctx, client, tok.ID+".0123456789abcdef", UsageAgent, now); !errors.Is(err, ErrWrongSecret) {
		t.Fatalf("wrong secret: %v", err)
	}
	var expired *ExpiredError
	if err := Check(ctx, client, tok.Secret, UsageAgent, now.Add(time.Hour)); !errors.As(err, &expired) || !strings.Contains(err.Error(), "expired at 2026-01-02T04:04:05Z") || !Refused(err) {
		t.Fatalf("after the ttl: %v", err)
	}
	if err := Delete(ctx, client, tok.ID); err != nil {
		t.Fatal(err)
	}
	var nf *NotFoundError
	if err := Check(ctx, client, tok.Secret, UsageAgent, now); !errors.As(err, &nf) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("after delete: %v", err)
	}
	if err := Delete(ctx, client, tok.ID); !errors.As(err, &nf) {
		t.Fatalf("delete twice: %v", err)
	}
	if err := Delete(ctx, client, "NOT-AN-ID"); err == nil || !strings.Contains(err.Error(), "6 characters") {
		t.Fatalf("bad id: %v", err)
	}
}

func TestServerUsageJoinsAgentsAndNoTTLNeverExpires(t *testing.T) {
	ctx := t.Context()
	client := fake.NewClientset()
	tok, err := Create(ctx, client, CreateOptions{Usages: []Usage{UsageServer}})
	if err != nil {
		t.Fatal(err)
	}
	far := time.Now().Add(100 * 365 * 24 * time.Hour)
	for _, u := range []Usage{UsageServer, UsageAgent} {
		if err := Check(ctx, client, tok.Secret, u, far); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	if _, err := ParseUsage("signing"); err == nil {
		t.Error("usage signing accepted")
	}
	if _, err := Create(ctx, client, CreateOptions{TTL: -time.Second}); err == nil || !strings.Contains(err.Error(), "--ttl") {
		t.Errorf("negative ttl: %v", err)
	}
}

func TestCreatePrunesLongExpired(t *testing.T) {
	ctx := t.Context()
	client := fake.NewClientset()
	now := time.Now()
	old, err := Create(ctx, client, CreateOptions{TTL: time.Hour, Now: now.Add(-PruneAfter - 2*time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	recent, err := Create(ctx, client, CreateOptions{TTL: time.Hour, Now: now.Add(-2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Create(ctx, client, CreateOptions{TTL: time.Hour, Now: now}); err != nil {
		t.Fatal(err)
	}
	infos, _ := List(ctx, client)
	ids := map[string]bool{}
	for _, i := range infos {
		ids[i.ID] = true
	}
	if ids[old.ID] || !ids[recent.ID] || len(infos) != 2 {
		t.Fatalf("after prune: %+v (old %s, recent %s)", infos, old.ID, recent.ID)
	}
}

func TestRetired(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token-rotated")
	if Retired(path, "a") {
		t.Fatal("retired without a file")
	}
	if err := retire(path, "old-secret"); err != nil {
		t.Fatal(err)
	}
	if !Retired(path, "old-secret") || Retired(path, "new-secret") {
		t.Fatal("Retired does not match what retire wrote")
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), "old-secret") {
		t.Fatal("the retired secret is stored in clear")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
}

func TestRotateRefusesTheAgentToken(t *testing.T) {
	client := fake.NewClientset()
	if err := Rotate(t.Context(), client, "same", "same"); err == nil || !strings.Contains(err.Error(), "agent token") {
		t.Fatalf("rotate to the agent token: %v", err)
	}
	for _, s := range []string{"first", "second"} {
		if err := Rotate(t.Context(), client, s, "agent"); err != nil {
			t.Fatal(err)
		}
	}
	got, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Get(t.Context(), ServerTokenSecret, metav1.GetOptions{})
	if err != nil || string(got.Data["secret"]) != "second" {
		t.Fatalf("%v, %v", got, err)
	}
}
