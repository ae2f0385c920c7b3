package pki

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pool returns a pool of every certificate in the PEM files.
func pool(t *testing.T, paths ...string) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !p.AppendCertsFromPEM(data) {
			t.Fatalf("%s: no certificate", path)
		}
	}
	return p
}

// verifyChain verifies the leaf file (leaf and chain, as a TLS peer sends
// them) against roots.
func verifyChain(t *testing.T, path string, roots *x509.CertPool, now time.Time, usages []x509.ExtKeyUsage) error {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	all, err := parseCerts(data)
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	for _, c := range all[1:] {
		inter.AddCert(c)
	}
	_, err = all[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: usages})
	return err
}

func TestCARotation(t *testing.T) {
	cfg := testConfig(t)
	b := generate(t, cfg)
	node := NodeConfig{Dir: filepath.Join(t.TempDir(), "agent", "tls"), NodeName: "node-1", Now: cfg.Now}
	if _, err := IssueNode(b, node); err != nil {
		t.Fatal(err)
	}
	oldRoots := map[string]*x509.CertPool{}
	oldPEM := map[string][]byte{}
	for _, c := range caCases(b) {
		oldRoots[c.cert] = pool(t, c.cert)
		oldPEM[c.cert], _ = os.ReadFile(c.cert)
	}
	oldPinned, err := PinnedCA(b.ServerCA)
	if err != nil || !bytes.Equal(oldPinned, oldPEM[b.ServerCA]) {
		t.Fatalf("PinnedCA before a rotation = the file's bytes? %v", err)
	}

	later := testTime().Add(time.Hour)
	if err := StartCARotation(b, later); err != nil {
		t.Fatalf("StartCARotation: %v", err)
	}
	if err := StartCARotation(b, later); err == nil || !strings.Contains(err.Error(), "--finish") {
		t.Fatalf("a second StartCARotation: %v, want an error that says to finish first", err)
	}
	if in, err := CARotationInProgress(b); err != nil || !in {
		t.Fatalf("CARotationInProgress = %v, %v; want true", in, err)
	}
	for _, c := range caCases(b) {
		data, _ := os.ReadFile(c.cert)
		all, err := parseCerts(data)
		if err != nil || len(all) != 2 {
			t.Fatalf("%s: %d certificates, %v; want the bundle new + old", c.cert, len(all), err)
		}
		if !bytes.HasSuffix(data, oldPEM[c.cert]) {
			t.Errorf("%s: the old CA is not the bundle's second certificate", c.cert)
		}
		key, err := readKey(c.key)
		if err != nil || !publicKeyMatches(all[0], key) {
			t.Errorf("%s: the key is not the new CA's (%v)", c.key, err)
		}
		if !strings.HasPrefix(all[0].Subject.CommonName, c.prefix) {
			t.Errorf("%s: new CA subject %s", c.cert, all[0].Subject)
		}
		if _, err := os.Stat(nextKeyPath(c.key)); err == nil {
			t.Errorf("%s is left behind", nextKeyPath(c.key))
		}
		if st, err := os.Stat(c.key); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", c.key, st.Mode(), err)
		}
	}
	newPinned, err := PinnedCA(b.ServerCA)
	if err != nil || bytes.Equal(newPinned, oldPinned) {
		t.Fatalf("PinnedCA after the start is the old CA (%v)", err)
	}

	// Every leaf is due and issued again by the new CA, with the cross
	// certificate: the old roots and the new ones both verify it.
	var reasons []string
	cfg.Now = clock(later)
	cfg.OnIssue = func(path, reason string) { reasons = append(reasons, reason) }
	generate(t, cfg)
	node.Now, node.OnIssue = cfg.Now, cfg.OnIssue
	if _, err := IssueNode(b, node); err != nil {
		t.Fatal(err)
	}
	if want := len(leafCases(b)) + 4; len(reasons) != want {
		t.Errorf("%d leaves issued again (%v), want %d", len(reasons), reasons, want)
	}
	for _, r := range reasons {
		if r != "not signed by the current CA" {
			t.Errorf("reason %q", r)
		}
	}
	for path, ca := range map[string]string{b.ServerCASigning: b.ServerCA, b.ClientCASigning: b.ClientCA} {
		data, _ := os.ReadFile(path)
		if all, err := parseCerts(data); err != nil || len(all) != 1 || !bytes.Equal(data, mustPinned(t, ca)) {
			t.Errorf("%s is not the new CA of %s alone (the controller-manager's signer wants one certificate)", path, ca)
		}
	}
	nb := NodeLayout(node.Dir)
	type leaf struct {
		path, ca string
		usages   []x509.ExtKeyUsage
	}
	leaves := []leaf{
		{nb.KubeletServingCert, b.ServerCA, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{nb.KubeletClientCert, b.ClientCA, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	}
	for _, l := range leafCases(b) {
		leaves = append(leaves, leaf{l.cert, l.ca, l.usages})
	}
	for _, l := range leaves {
		if err := verifyChain(t, l.path, oldRoots[l.ca], later, l.usages); err != nil {
			t.Errorf("%s against the old CA only (a trust store that did not reload): %v", l.path, err)
		}
		newOnly := x509.NewCertPool()
		newOnly.AppendCertsFromPEM(mustPinned(t, l.ca))
		if err := verifyChain(t, l.path, newOnly, later, l.usages); err != nil {
			t.Errorf("%s against the new CA only: %v", l.path, err)
		}
	}
	if data, _ := os.ReadFile(nb.ServerCA); !bytes.Contains(data, oldPEM[b.ServerCA]) {
		t.Errorf("the node's server CA copy is not the bundle")
	}

	// Finishing drops the old CAs; the pinned CA stays the same bytes.
	changedFiles, err := FinishCARotation(b, later)
	if err != nil || len(changedFiles) != 5 {
		t.Fatalf("FinishCARotation = %v, %v; want the five CA files", changedFiles, err)
	}
	for _, c := range caCases(b) {
		data, _ := os.ReadFile(c.cert)
		if all, _ := parseCerts(data); len(all) != 1 {
			t.Errorf("%s: %d certificates after the finish", c.cert, len(all))
		}
	}
	if data, _ := os.ReadFile(b.ServerCA); !bytes.Equal(data, newPinned) {
		t.Errorf("server-ca.crt after the finish differs from what the token pinned during the rotation")
	}
	for _, l := range leaves[2:] {
		if err := verifyChain(t, l.path, pool(t, l.ca), later, l.usages); err != nil {
			t.Errorf("%s after the finish: %v", l.path, err)
		}
	}
	before := snapshot(t, b.Dir)
	cfg.OnIssue = nil
	generate(t, cfg)
	if c := changed(before, snapshot(t, b.Dir)); len(c) > 0 {
		t.Errorf("Generate after the finish changed %v", c)
	}
	if in, err := CARotationInProgress(b); err != nil || in {
		t.Errorf("CARotationInProgress after the finish = %v, %v", in, err)
	}
	if again, err := FinishCARotation(b, later); err != nil || len(again) != 0 {
		t.Errorf("a second FinishCARotation = %v, %v; want nothing", again, err)
	}
}

// mustPinned returns the first certificate of the CA file at path.
func mustPinned(t *testing.T, path string) []byte {
	t.Helper()
	data, err := PinnedCA(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestCARotationResumes(t *testing.T) {
	cfg := testConfig(t)
	b := generate(t, cfg)
	later := testTime().Add(time.Hour)
	// A crash after the new key was written, before the CA file changed.
	key, err := newECKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := writeKey(nextKeyPath(b.ServerCAKey), key); err != nil {
		t.Fatal(err)
	}
	if in, _ := CARotationInProgress(b); !in {
		t.Error("a waiting new key is not a rotation in progress")
	}
	if _, err := FinishCARotation(b, later); err == nil {
		t.Error("FinishCARotation with a half-done start: no error")
	}
	if err := StartCARotation(b, later); err != nil {
		t.Fatalf("StartCARotation after the crash: %v", err)
	}
	got, err := readKey(b.ServerCAKey)
	if err != nil || !publicKeysEqual(got.Public(), key.Public()) {
		t.Errorf("the resumed rotation did not use the key it left (%v)", err)
	}
}
