package pki

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestApplyCARotationFiles: a second server with the same CAs (copied, as
// a join does) applies what the first one's StartCARotation wrote; its
// leaves issued again are of the new CAs and verify against the old ones
// through the cross certificate; a second apply changes nothing; files of
// another cluster's rotation are refused.
func TestApplyCARotationFiles(t *testing.T) {
	cfg := testConfig(t)
	b := generate(t, cfg)
	cfg2 := testConfig(t)
	b2 := Layout(cfg2.Dir)
	for _, p := range b.CAFiles() {
		data, _ := os.ReadFile(p)
		rel, _ := filepath.Rel(b.Dir, p)
		if err := os.MkdirAll(filepath.Dir(filepath.Join(b2.Dir, rel)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(b2.Dir, rel), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	generate(t, cfg2)
	oldRoots := pool(t, b2.ServerCA)

	if err := StartCARotation(b, cfg.Now()); err != nil {
		t.Fatal(err)
	}
	files, err := CARotationFiles(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 15 {
		t.Errorf("%d files, want 15 (bundle, key and cross of 5 CAs)", len(files))
	}
	changed, err := ApplyCARotationFiles(b2, files)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 5 {
		t.Errorf("changed %v, want the 5 CAs", changed)
	}
	for _, c := range caCases(b) {
		a, _ := os.ReadFile(c.key)
		rel, _ := filepath.Rel(b.Dir, c.key)
		k, _ := os.ReadFile(filepath.Join(b2.Dir, rel))
		if !bytes.Equal(a, k) {
			t.Errorf("%s differs between the servers", rel)
		}
	}
	generate(t, cfg2) // every leaf is due: not of the current CA
	newRoots := x509.NewCertPool()
	newRoots.AddCert(readCert(t, b2.ServerCA))
	for name, roots := range map[string]*x509.CertPool{"old": oldRoots, "new": newRoots} {
		if err := verifyChain(t, b2.APIServerCert, roots, cfg.Now(), []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}); err != nil {
			t.Errorf("the second server's apiserver certificate against the %s CA: %v", name, err)
		}
	}
	if changed, err := ApplyCARotationFiles(b2, files); err != nil || len(changed) != 0 {
		t.Errorf("second apply: changed %v, %v; want nothing", changed, err)
	}
	if _, err := FinishCARotation(b2, cfg.Now()); err != nil {
		t.Fatal(err)
	}
	if changed, err := ApplyCARotationFiles(b2, files); err != nil || len(changed) != 0 {
		t.Errorf("apply after finish: changed %v, %v; want nothing", changed, err)
	}

	other := generate(t, testConfig(t))
	_, err = ApplyCARotationFiles(other, files)
	if err == nil || !strings.Contains(err.Error(), "not a rotation of this cluster's CAs") {
		t.Errorf("another cluster's rotation: %v", err)
	}
	delete(files, "etcd/peer-ca.cross.crt")
	if _, err := ApplyCARotationFiles(other, files); err == nil || !strings.Contains(err.Error(), "lack etcd/peer-ca.cross.crt") {
		t.Errorf("files without a cross certificate: %v", err)
	}
}
