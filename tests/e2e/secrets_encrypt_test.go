package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
)

// TestSecretsEncryptionServers: server b joining a's cluster gets a's
// encryption key (the same 0600 file) and reads a Secret a wrote;
// `kedge secrets-encrypt rotate-keys` on a moves both servers to a new key
// (status: both loaded it), every Secret is stored with it (etcd's raw
// value), and both servers read the Secrets written before.
func TestSecretsEncryptionServers(t *testing.T) {
	c := harness.NewCluster(t)
	var a, b *harness.Node
	const file = "/var/lib/kedge/server/cred/encryption-config.json"
	kedge := func(n *harness.Node, args ...string) string {
		t.Helper()
		begin := time.Now()
		out, err := n.Exec(append([]string{c.Bin()}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("kedge %s (%s, on %s):\n%s", strings.Join(args, " "), time.Since(begin).Round(time.Millisecond), n.Name(), out)
		return out
	}
	c.Step("start server a; a Secret written through a is encrypted in etcd", func() {
		a = c.AddNode("a")
		a.Start()
		a.WaitReady(5 * time.Minute)
		a.MustKubectl("create", "secret", "generic", "before-join", "--from-literal=v=written-by-a")
		if raw := rawEtcdValue(t, a, "/registry/secrets/default/before-join"); !strings.HasPrefix(raw, "k8s:enc:secretbox:v1:") {
			t.Fatalf("stored as %q…", raw[:min(len(raw), 30)])
		}
	})
	c.Step("server b joins: same key file (0600), reads a's Secret", func() {
		b = c.AddNode("b", "--server", "https://"+a.IP().String()+":6443", "--token", joinToken(t, a))
		b.Start()
		b.WaitReady(5 * time.Minute)
		ka, _ := a.Exec("sha256sum", file)
		kb, _ := b.Exec("sha256sum", file)
		if ka == "" || strings.Fields(ka)[0] != strings.Fields(kb)[0] {
			t.Fatalf("a's %s %q, b's %q", file, ka, kb)
		}
		if mode, _ := b.Exec("stat", "-c", "%a", file); mode != "600" {
			t.Fatalf("b's %s has mode %s", file, mode)
		}
		if got := b.MustKubectl("get", "secret", "before-join", "-o", "jsonpath={.data.v}"); got != base64.StdEncoding.EncodeToString([]byte("written-by-a")) {
			t.Fatalf("b reads %q", got)
		}
		b.MustKubectl("create", "secret", "generic", "from-b", "--from-literal=v=written-by-b")
		kedge(a, "secrets-encrypt", "status")
	})
	var newKey string
	c.Step("rotate-keys on a: both servers on the new key, every Secret rewritten, both read them", func() {
		oldKey := keyOf(rawEtcdValue(t, a, "/registry/secrets/default/before-join"))
		out := kedge(a, "secrets-encrypt", "rotate-keys")
		if !strings.Contains(out, "(2 servers)") {
			t.Fatalf("rotate-keys did not reach 2 servers:\n%s", out)
		}
		for _, key := range []string{"/registry/secrets/default/before-join", "/registry/secrets/default/from-b"} {
			if newKey = keyOf(rawEtcdValue(t, b, key)); newKey == oldKey || newKey == "" {
				t.Fatalf("%s: key %q after rotation, %q before", key, newKey, oldKey)
			}
		}
		st := kedge(b, "secrets-encrypt", "status")
		if strings.Count(st, newKey) < 2 || strings.Count(st, " yes") != 2 || strings.Contains(st, oldKey) {
			t.Fatalf("status after rotation does not show both servers on %s alone:\n%s", newKey, st)
		}
		for _, n := range []*harness.Node{a, b} {
			for _, s := range []string{"before-join", "from-b"} {
				if _, err := n.Kubectl("get", "secret", s); err != nil {
					t.Fatalf("%s reads %s: %v", n.Name(), s, err)
				}
			}
		}
		kedge(a, "secrets-encrypt", "reencrypt")
	})
	c.Step("kedge token rotate on a: b's token file follows", func() {
		out := kedge(a, "token", "rotate")
		rotated := strings.Split(out, "\n")[1]
		c.Eventually(time.Minute, "b's token file has the new token", func() error {
			if got := joinToken(t, b); got != rotated {
				return fmt.Errorf("b's token file still %q…", got[:min(len(got), 20)])
			}
			return nil
		})
	})
	t.Log("\n" + c.Summary())
}

// rawEtcdValue reads a key's stored bytes through n's etcd JSON gateway.
func rawEtcdValue(t *testing.T, n *harness.Node, key string) string {
	t.Helper()
	tls := "/var/lib/kedge/server/tls/etcd/"
	body := fmt.Sprintf(`{"key":%q}`, base64.StdEncoding.EncodeToString([]byte(key)))
	out, err := n.Exec("curl", "-sS", "--fail", "--cacert", tls+"server-ca.crt", "--cert", tls+"client.crt", "--key", tls+"client.key",
		"-X", "POST", "-d", body, "https://127.0.0.1:2379/v3/kv/range")
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		Kvs []struct {
			Value []byte `json:"value"`
		} `json:"kvs"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("etcd range %s: %q, %v", key, out, err)
	}
	return string(resp.Kvs[0].Value)
}

// keyOf is the key name of a value "k8s:enc:secretbox:v1:<name>:…".
func keyOf(raw string) string {
	name, _, _ := strings.Cut(strings.TrimPrefix(raw, "k8s:enc:secretbox:v1:"), ":")
	return name
}
