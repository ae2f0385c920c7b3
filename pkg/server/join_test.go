package server

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestWriteCAFilesDuringRotation: a server joining between the two phases
// of a CA rotation gets the cross certificates with the bundles, so its new
// etcd peer certificate verifies against the old peer CA alone (the pool of
// the running members).
func TestWriteCAFilesDuringRotation(t *testing.T) {
	src, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	oldPeer := x509.NewCertPool()
	oldPeer.AppendCertsFromPEM(mustReadFile(t, src.EtcdPeerCA))
	if err := pki.StartCARotation(src, time.Now()); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, p := range append(src.CAFiles(), src.CrossFiles()...) {
		rel, _ := filepath.Rel(src.Dir, p)
		files[filepath.ToSlash(rel)] = mustReadFile(t, p)
	}
	dir := filepath.Join(t.TempDir(), "tls")
	if err := writeCAFiles(pki.Layout(dir), files); err != nil {
		t.Fatal(err)
	}
	got, err := pki.Generate(pki.Config{Dir: dir, ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s2"})
	if err != nil {
		t.Fatal(err)
	}
	data := mustReadFile(t, got.EtcdPeerCert)
	var chain []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: oldPeer, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the joined server's etcd peer certificate against the old peer CA: %v (chain of %d)", err, len(chain))
	}
}
