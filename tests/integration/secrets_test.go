package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kedge-io/kedge/pkg/etcd"
	"github.com/kedge-io/kedge/pkg/server"
)

// TestSecretsEncryptedAtRest: a new cluster encrypts Secrets (the value of
// a Secret is nowhere in etcd's bbolt db and WAL files) and rotates its key
// (rotate-keys: the Secret is stored with the new key and still reads);
// a cluster created with --secrets-encryption=false stores it in clear.
func TestSecretsEncryptedAtRest(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		n := newNode(t)
		n.start("--disable-agent")
		n.waitReady(3 * time.Minute)
		file := server.Config{DataDir: n.dataDir()}.EncryptionConfigFile()
		st, err := os.Stat(file)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, %v; want mode 0600", file, st, err)
		}
		marker := newMarker(t)
		if _, err := n.kubectl("create", "secret", "generic", "marker", "--from-literal=v="+marker); err != nil {
			t.Fatal(err)
		}
		out := n.kedge(t, "secrets-encrypt", "status")
		t.Logf("kedge secrets-encrypt status:\n%s", out)
		if !strings.Contains(out, "secretbox") || !strings.Contains(out, "yes") {
			t.Fatalf("status does not show secretbox loaded:\n%s", out)
		}
		before := rawSecret(t, n, "default", "marker")
		if !bytes.HasPrefix(before, []byte("k8s:enc:secretbox:v1:")) {
			t.Fatalf("the Secret in etcd starts %q, want k8s:enc:secretbox:v1:", before[:min(len(before), 40)])
		}
		begin := time.Now()
		out = n.kedge(t, "secrets-encrypt", "rotate-keys")
		t.Logf("kedge secrets-encrypt rotate-keys (%s):\n%s", time.Since(begin).Round(time.Millisecond), out)
		after := rawSecret(t, n, "default", "marker")
		oldKey, newKey := keyName(before), keyName(after)
		if oldKey == newKey || !strings.Contains(out, "reencrypt:") || !strings.Contains(out, newKey) {
			t.Fatalf("key before %q, after %q; output:\n%s", oldKey, newKey, out)
		}
		if raw, _ := os.ReadFile(file); bytes.Contains(raw, []byte(oldKey)) {
			t.Fatalf("the old key %s is still in %s", oldKey, file)
		}
		if got, err := n.kubectl("get", "secret", "marker", "-o", "jsonpath={.data.v}"); err != nil || got == "" {
			t.Fatalf("the Secret after rotation: %q, %v", got, err)
		}
		out = n.kedge(t, "secrets-encrypt", "reencrypt")
		t.Logf("kedge secrets-encrypt reencrypt: %s", out)
		n.stop(time.Minute)
		if hits := scanEtcd(t, n.dataDir(), marker); len(hits) > 0 {
			t.Fatalf("the Secret's value is in clear in %v", hits)
		}
	})
	t.Run("opt-out", func(t *testing.T) {
		n := newNode(t)
		n.start("--disable-agent", "--secrets-encryption=false")
		n.waitReady(3 * time.Minute)
		if _, err := os.Stat(server.Config{DataDir: n.dataDir()}.EncryptionConfigFile()); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("encryption config with --secrets-encryption=false: %v", err)
		}
		marker := newMarker(t)
		if _, err := n.kubectl("create", "secret", "generic", "marker", "--from-literal=v="+marker); err != nil {
			t.Fatal(err)
		}
		out := n.kedge(t, "secrets-encrypt", "status")
		t.Logf("kedge secrets-encrypt status:\n%s", out)
		if !strings.Contains(out, "off") {
			t.Fatalf("status does not say off:\n%s", out)
		}
		if out, code := runKedge(t, n.bin, nil, "secrets-encrypt", "rotate-keys", "--data-dir", n.dataDir()); code == 0 || !strings.Contains(out, "does not encrypt") {
			t.Fatalf("rotate-keys without encryption: exit %d: %s", code, out)
		}
		n.stop(time.Minute)
		hits := scanEtcd(t, n.dataDir(), marker)
		t.Logf("the Secret's value in clear in %d etcd files: %v", len(hits), hits)
		if len(hits) == 0 {
			t.Fatal("the Secret's value is in no etcd file of an unencrypted cluster: the scan finds nothing")
		}
	})
}

// kedge runs a kedge subcommand against n's data dir; it fails the test on a
// non-zero exit.
func (n *node) kedge(t *testing.T, args ...string) string {
	t.Helper()
	out, code := runKedge(t, n.bin, nil, append(args, "--data-dir", n.dataDir())...)
	if code != 0 {
		t.Fatalf("kedge %s: exit %d: %s", strings.Join(args, " "), code, out)
	}
	return strings.TrimSpace(out)
}

// newMarker is a random value no file holds by chance.
func newMarker(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "kedge-marker-" + hex.EncodeToString(b)
}

// scanEtcd returns the files under the data dir's etcd directory (the bbolt
// db, WAL segments, snapshots) that contain marker.
func scanEtcd(t *testing.T, dataDir, marker string) []string {
	t.Helper()
	var hits []string
	files := 0
	root := filepath.Join(dataDir, "server", "db")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(raw, []byte(marker)) {
			hits = append(hits, strings.TrimPrefix(p, root+"/"))
		}
		return nil
	})
	if err != nil || files < 2 {
		t.Fatalf("scan %s: %v (%d files)", root, err, files)
	}
	return hits
}

// rawSecret reads a Secret's bytes as etcd stores them.
func rawSecret(t *testing.T, n *node, ns, name string) []byte {
	t.Helper()
	c, err := etcd.NewClient("https://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(etcd.ClientPort)), server.LocalEtcdTLS(n.dataDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, "/registry/secrets/"+ns+"/"+name, clientv3.WithLimit(1))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("etcd get secret %s/%s: %v", ns, name, err)
	}
	return resp.Kvs[0].Value
}

// keyName is the key name in a value "k8s:enc:secretbox:v1:<name>:…".
func keyName(raw []byte) string {
	rest := strings.TrimPrefix(string(raw), "k8s:enc:secretbox:v1:")
	name, _, _ := strings.Cut(rest, ":")
	return name
}
