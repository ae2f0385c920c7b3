package integration

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/server"
	"github.com/kedge-io/kedge/pkg/supervisor"
)

// TestTokens: `kedge token create|list|delete|rotate` against a running
// server, and what the join API answers a node with each token: a created
// token joins; after its ttl it is refused as expired, after delete as one
// that does not exist, both definite (join.Permanent); after rotate the old
// server token is refused and the new one joins, and a restart with the old
// --token keeps the new one.
func TestTokens(t *testing.T) {
	n := newNode(t)
	n.start("--disable-agent")
	n.waitReady(3 * time.Minute)
	url := "https://127.0.0.1:" + strconv.Itoa(n.port)
	try := func(tok, node string) error {
		parsed, err := join.Parse(tok)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req := supervisor.NodeRequest{Name: node, Password: "0123456789abcdef-" + node, IPs: []string{"192.0.2.9"}}
		var answer supervisor.NodeResponse
		return join.Post(ctx, url, parsed, join.UserNode, supervisor.NodePath, req, &answer, nil)
	}

	short := n.kedge(t, "token", "create", "--ttl", "4s", "--description", "short-lived")
	long := n.kedge(t, "token", "create", "--description", "for site 7", "--usages", "agent,server")
	t.Logf("kedge token create --ttl 4s → %s…", short[:20])
	caPEM, err := os.ReadFile(server.TLSLayout(n.dataDir()).ServerCA)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{short, long} {
		if p, err := join.Parse(tok); err != nil || p.CAHash != join.CAHash(caPEM) || !strings.Contains(p.Secret, ".") {
			t.Fatalf("created token %q…: %+v, %v; want KEDGE1<this CA's hash>::<id>.<secret>", tok[:20], p.CAHash, err)
		}
	}
	list := n.kedge(t, "token", "list")
	t.Logf("kedge token list:\n%s", list)
	shortID := short[strings.Index(short, "::")+2:][:6]
	longID := long[strings.Index(long, "::")+2:][:6]
	if !strings.Contains(list, shortID) || !strings.Contains(list, longID) || !strings.Contains(list, "agent,server") || !strings.Contains(list, "for site 7") {
		t.Fatalf("list does not show both tokens:\n%s", list)
	}
	if err := try(short, "node-a"); err != nil {
		t.Fatalf("join with a created token: %v", err)
	}
	time.Sleep(4 * time.Second)
	err = try(short, "node-b")
	t.Logf("join with the expired token: %v", err)
	if err == nil || !join.Permanent(err) || !strings.Contains(err.Error(), "token "+shortID+" expired at") {
		t.Fatalf("expired token: %v; want a definite refusal saying it expired", err)
	}
	if out := n.kedge(t, "token", "list"); !strings.Contains(out, "expired") {
		t.Fatalf("list does not show the expired token:\n%s", out)
	}
	out := n.kedge(t, "token", "delete", longID)
	t.Logf("kedge token delete %s: %s", longID, out)
	err = try(long, "node-c")
	t.Logf("join with the deleted token: %v", err)
	if err == nil || !join.Permanent(err) || !strings.Contains(err.Error(), "token "+longID+" does not exist") {
		t.Fatalf("deleted token: %v; want a definite refusal saying it does not exist", err)
	}
	if out, code := runKedge(t, n.bin, nil, "token", "delete", longID, "--data-dir", n.dataDir()); code == 0 || !strings.Contains(out, "does not exist") {
		t.Fatalf("delete twice: exit %d: %s", code, out)
	}

	// Rotation of the server token.
	tokenFile := server.Config{DataDir: n.dataDir()}.TokenFile()
	oldRaw, _ := os.ReadFile(tokenFile)
	old := strings.TrimSpace(string(oldRaw))
	out = n.kedge(t, "token", "rotate", "--new-token", "rotated-secret-0123456789")
	t.Logf("kedge token rotate --new-token …:\n%s", out)
	want := join.New(caPEM, "rotated-secret-0123456789").String()
	if !strings.Contains(out, want) {
		t.Fatalf("rotate does not print the new full token %s:\n%s", want, out)
	}
	var refused error
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if refused = try(old, "node-d"); refused != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("join with the old server token: %v", refused)
	if refused == nil || !join.Permanent(refused) {
		t.Fatalf("old server token after rotate: %v; want a definite refusal", refused)
	}
	if err := try(want, "node-d"); err != nil {
		t.Fatalf("new server token: %v", err)
	}
	if raw, _ := os.ReadFile(tokenFile); strings.TrimSpace(string(raw)) != want {
		t.Fatalf("token file after rotate: %q, want %q", raw, want)
	}
	// A restart with the previous --token (a server's config not updated
	// yet) keeps the new token and warns.
	n.stop(time.Minute)
	n.start("--disable-agent", "--token", old)
	n.waitReady(3 * time.Minute)
	if !strings.Contains(n.log.String(), "previous server token") {
		t.Fatalf("no warning about the previous --token:\n%s", tail(n.log.String(), 3000))
	}
	if err := try(want, "node-e"); err != nil {
		t.Fatalf("new server token after restart: %v", err)
	}
	if err := try(old, "node-f"); err == nil {
		t.Fatal("old server token accepted after restart")
	}
}
