package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kedge-io/kedge/pkg/certs"
	"github.com/kedge-io/kedge/pkg/etcd/etcdtest"
	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/pki"
)

// testServer is a server's data dir with its CAs and leaves, and its
// rotator on the shared etcd.
func testServer(t *testing.T, name string, client *clientv3.Client, from *Config) (Config, caRotator) {
	t.Helper()
	cfg := Config{DataDir: t.TempDir(), NodeName: name}
	if from != nil { // joined: the cluster's CAs, as the supervisor sends them
		src, dst := pki.Layout(from.tlsDir()), pki.Layout(cfg.tlsDir())
		for _, p := range src.CAFiles() {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(src.Dir, p)
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dst.Dir, rel)), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dst.Dir, rel), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	pc := pki.Config{Dir: cfg.tlsDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: name}
	renew := func(_ context.Context, rotate []string) ([]certs.Issued, error) {
		var issued []certs.Issued
		c := pc
		c.Rotate, c.OnIssue = rotate, func(path, reason string) { issued = append(issued, certs.Issued{File: path, Reason: reason}) }
		_, err := pki.Generate(c)
		return issued, err
	}
	if _, err := renew(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ensureTokens(cfg, pki.Layout(cfg.tlsDir()).ServerCA, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return cfg, caRotator{cfg: cfg, renew: renew, etcdClient: func() (*clientv3.Client, error) { return client, nil }, log: slog.New(slog.DiscardHandler)}
}

// TestCARotationAcrossServers: `rotate-ca` on server a publishes the new
// CAs in etcd, sealed; server b's caSync applies them (same CA files as
// a, its leaves issued again by the new CA and verified by the old one
// through the cross certificate, its token of the new CA hash) and
// reports the phase; a second rotation is refused while one is in
// progress; --finish on a drops the old CAs, b follows.
func TestCARotationAcrossServers(t *testing.T) {
	client := etcdtest.Start(t, "a")
	cfgA, a := testServer(t, "a", client, nil)
	cfgB, b := testServer(t, "b", client, &cfgA)
	la, lb := pki.Layout(cfgA.tlsDir()), pki.Layout(cfgB.tlsDir())
	oldRoots := x509.NewCertPool()
	oldRoots.AppendCertsFromPEM(mustReadFile(t, lb.ServerCA))
	var mu sync.Mutex
	syncB := &caSync{rot: b, mu: &mu, log: slog.New(slog.DiscardHandler)}

	issued, phases, err := a.rotate(t.Context(), certs.CAStart, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(issued) == 0 || phases["a"] != certs.CAStart {
		t.Errorf("start on a: %d issued, phases %v", len(issued), phases)
	}
	resp, err := client.Get(t.Context(), CARotationPlanKey)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("plan: %v, %v", resp, err)
	}
	key := mustReadFile(t, la.ServerCAKey)
	if bytes.Contains(resp.Kvs[0].Value, key) || bytes.Contains(resp.Kvs[0].Value, []byte("PRIVATE KEY")) {
		t.Error("the plan in etcd holds a CA key in the clear")
	}

	p, _, _, err := getPlan(t.Context(), client)
	if err != nil || p == nil {
		t.Fatalf("getPlan: %v, %v", p, err)
	}
	syncB.sync(t.Context(), client, p)
	for _, f := range append(la.CrossFiles(), la.ServerCA, la.ServerCAKey, la.EtcdPeerCA, la.EtcdPeerCAKey) {
		rel, _ := filepath.Rel(la.Dir, f)
		if !bytes.Equal(mustReadFile(t, f), mustReadFile(t, filepath.Join(lb.Dir, rel))) {
			t.Errorf("%s differs between a and b", rel)
		}
	}
	newRoots := x509.NewCertPool()
	newRoots.AddCert(firstOf(t, lb.ServerCA))
	for what, roots := range map[string]*x509.CertPool{"old": oldRoots, "new": newRoots} {
		if err := verifyFile(lb.APIServerCert, roots); err != nil {
			t.Errorf("b's apiserver certificate against the %s CA: %v", what, err)
		}
	}
	tokA, tokB := mustReadFile(t, cfgA.TokenFile()), mustReadFile(t, cfgB.TokenFile())
	pinned, _ := pki.PinnedCA(lb.ServerCA)
	if !strings.Contains(string(tokB), join.CAHash(pinned)) || !strings.Contains(string(tokA), join.CAHash(pinned)) {
		t.Errorf("tokens do not pin the new CA: a %s, b %s", tokA, tokB)
	}
	r, err := client.Get(t.Context(), CARotationServersPrefix+"b")
	if err != nil || len(r.Kvs) != 1 || !strings.Contains(string(r.Kvs[0].Value), `"phase":"start"`) {
		t.Errorf("b's report: %v, %v", r, err)
	}
	if state, err := readCARotation(cfgB); err != nil || len(state.PreviousCAHashes) != 1 || state.PreviousCAHashes[0] != p.OldCAHash {
		t.Errorf("b's recorded rotation: %+v, %v", state, err)
	}

	if _, _, err := b.rotate(t.Context(), certs.CAStart, false); err == nil || !strings.Contains(err.Error(), "started on server a") {
		t.Errorf("a second rotation on b: %v", err)
	}

	if _, phases, err = a.rotate(t.Context(), certs.CAFinish, true); err != nil || phases["a"] != certs.CAFinish {
		t.Fatalf("finish on a: %v, %v", phases, err)
	}
	p, _, _, err = getPlan(t.Context(), client)
	if err != nil || p.Phase != certs.CAFinish {
		t.Fatalf("plan after finish: %+v, %v", p, err)
	}
	syncB.sync(t.Context(), client, p)
	for _, l := range []pki.Bundle{la, lb} {
		if in, err := pki.CARotationInProgress(l); in || err != nil {
			t.Errorf("%s: rotation still in progress after --finish (%v)", l.Dir, err)
		}
	}
	if !bytes.Equal(mustReadFile(t, la.ClientCA), mustReadFile(t, lb.ClientCA)) {
		t.Error("client-ca.crt differs between a and b after --finish")
	}
	if _, _, err := a.rotate(t.Context(), certs.CAFinish, false); err == nil || !strings.Contains(err.Error(), "no CA rotation is in progress") {
		t.Errorf("a second --finish: %v", err)
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// firstOf is the first certificate of a PEM file.
func firstOf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(mustReadFile(t, path))
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// verifyFile verifies a leaf file (leaf, then its chain) against roots.
func verifyFile(path string, roots *x509.CertPool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var all []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return err
		}
		all = append(all, c)
	}
	inter := x509.NewCertPool()
	for _, c := range all[1:] {
		inter.AddCert(c)
	}
	_, err = all[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}
