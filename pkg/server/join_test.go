package server

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kedge-io/kedge/pkg/pki"
)

func TestWriteCAFiles(t *testing.T) {
	src, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, p := range []string{src.ServerCA, src.ServerCAKey, src.ClientCA, src.ClientCAKey, src.RequestHeaderCA, src.RequestHeaderCAKey,
		src.EtcdServerCA, src.EtcdServerCAKey, src.EtcdPeerCA, src.EtcdPeerCAKey, src.ServiceAccountKey, src.ServiceAccountPub} {
		rel, _ := filepath.Rel(src.Dir, p)
		if files[filepath.ToSlash(rel)], err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "tls")
	if err := writeCAFiles(pki.Layout(dir), files); err != nil {
		t.Fatal(err)
	}
	// pki.Generate keeps the cluster's CAs and issues this server's leaves.
	got, err := pki.Generate(pki.Config{Dir: dir, ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]string{{src.ServerCA, got.ServerCA}, {src.EtcdPeerCA, got.EtcdPeerCA}, {src.ServiceAccountKey, got.ServiceAccountKey}} {
		a, _ := os.ReadFile(pair[0])
		b, _ := os.ReadFile(pair[1])
		if string(a) != string(b) {
			t.Errorf("%s differs from the cluster's", filepath.Base(pair[1]))
		}
	}
	if fi, err := os.Stat(got.EtcdServerCAKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("etcd server CA key: %v %v, want 0600", fi.Mode(), err)
	}

	bad := map[string][]byte{"../evil.crt": []byte("x")}
	for k, v := range files {
		bad[k] = v
	}
	if err := writeCAFiles(pki.Layout(t.TempDir()), bad); err == nil || !strings.Contains(err.Error(), "unexpected") {
		t.Fatalf("an unexpected file name: %v", err)
	}
	delete(files, "client-ca.key")
	if err := writeCAFiles(pki.Layout(t.TempDir()), files); err == nil || !strings.Contains(err.Error(), "client-ca.key") {
		t.Fatalf("a missing CA key: %v", err)
	}
}
