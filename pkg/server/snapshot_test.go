package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/kedge-io/kedge/pkg/etcdsnapshot"
	"github.com/kedge-io/kedge/pkg/pki"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// sourceServer is a server's data dir (CAs, tokens) whose etcd, a real
// member on loopback ports, holds 100 keys; it returns a snapshot of it
// that carries the sealed CAs, as the schedule and `etcd-snapshot save`
// take it.
func sourceServer(t *testing.T) (Config, string) {
	t.Helper()
	cfg := Config{DataDir: t.TempDir(), NodeName: "s1", AdvertiseIP: net.ParseIP("127.0.0.1"), HTTPSPort: 6443}
	certs, err := pki.Generate(pki.Config{Dir: cfg.tlsDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ensureTokens(cfg, certs.ServerCA, quiet); err != nil {
		t.Fatal(err)
	}
	// The keys of the Secrets at rest travel with the CAs (the bytes are
	// copied as they are).
	if err := os.MkdirAll(filepath.Dir(cfg.EncryptionConfigFile()), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.EncryptionConfigFile(), []byte(`{"kind":"EncryptionConfiguration","test":"s1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	port := func() url.URL {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return url.URL{Scheme: "http", Host: l.Addr().String()}
	}
	ec := embed.NewConfig()
	ec.Name, ec.Dir = "s1", cfg.etcdDir()
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	client, peer := port(), port()
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	ec.InitialCluster, ec.ListenMetricsUrls = "s1="+peer.String(), nil
	e, err := embed.StartEtcd(ec)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	<-e.Server.ReadyNotify()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{client.String()}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 100 {
		if _, err := c.Put(ctx, fmt.Sprintf("/registry/test/%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	sealed, err := SealedCAs(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	in, err := etcdsnapshot.Save(ctx, c, etcdsnapshot.SaveOptions{Dir: DefaultSnapshotDir(cfg.DataDir), Prefix: etcdsnapshot.OnDemandPrefix, Node: "s1", Compress: true, Bootstrap: sealed})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, in.Path
}

// TestRestoreOnNewMachine: a snapshot restored on a machine without the
// cluster's CAs needs --token, refuses a wrong one with nothing written,
// and with the right one brings back the CAs, both tokens and etcd's data.
// Restored again on that machine it needs no token and keeps the old data
// aside. A missing file and a data dir in use are refused.
func TestRestoreOnNewMachine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	src, snap := sourceServer(t)
	token, err := os.ReadFile(src.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	dst := Config{DataDir: t.TempDir(), NodeName: "n1", AdvertiseIP: net.ParseIP("10.0.0.9"), HTTPSPort: 6443, ClusterResetRestorePath: snap}

	err = restoreSnapshot(dst, quiet)
	if err == nil || !strings.Contains(err.Error(), "needs --token") || !strings.Contains(err.Error(), "untouched") {
		t.Fatalf("no token: %v", err)
	}
	dst.Token = "K10" + strings.Repeat("0", 64) + "::server:wrongsecretwrongsecret"
	if err := restoreSnapshot(dst, quiet); err == nil || !strings.Contains(err.Error(), "--token") {
		t.Fatalf("a token of another cluster: %v", err)
	}
	dst.Token = "wrong-secret-of-another-cluster"
	if err := restoreSnapshot(dst, quiet); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := os.Stat(dst.tlsDir()); !os.IsNotExist(err) {
		t.Fatalf("a refused restore wrote the tls dir: %v", err)
	}
	if _, err := os.Stat(dst.etcdDir()); !os.IsNotExist(err) {
		t.Fatalf("a refused restore wrote etcd's dir: %v", err)
	}

	dst.Token = strings.TrimSpace(string(token))
	begin := time.Now()
	if err := restoreSnapshot(dst, quiet); err != nil {
		t.Fatal(err)
	}
	t.Logf("restore with the CAs took %s", time.Since(begin).Round(time.Millisecond))
	srcCA, dstCA := pki.Layout(src.tlsDir()), pki.Layout(dst.tlsDir())
	for i, p := range srcCA.CAFiles() {
		a, _ := os.ReadFile(p)
		b, err := os.ReadFile(dstCA.CAFiles()[i])
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s not restored: %v", dstCA.CAFiles()[i], err)
		}
	}
	if fi, err := os.Stat(dst.EncryptionConfigFile()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("encryption config restored: %v %v, want mode 0600", fi, err)
	}
	for _, f := range [][2]string{{src.TokenFile(), dst.TokenFile()}, {src.AgentTokenFile(), dst.AgentTokenFile()}, {src.EncryptionConfigFile(), dst.EncryptionConfigFile()}} {
		a, _ := os.ReadFile(f[0])
		b, err := os.ReadFile(f[1])
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: %q, want %q (%v)", f[1], b, a, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dst.etcdDir(), "member", "snap", "db")); err != nil {
		t.Fatal(err)
	}

	// Again, now that the machine has the CAs: no token needed.
	dst.Token = ""
	if err := restoreSnapshot(dst, quiet); err != nil {
		t.Fatal(err)
	}
	if old, _ := filepath.Glob(dst.etcdDir() + "-old-*"); len(old) != 1 {
		t.Errorf("old data kept aside: %v", old)
	}

	unlock, err := lockDataDir(dst)
	if err != nil {
		t.Fatal(err)
	}
	err = restoreSnapshot(dst, quiet)
	if err == nil || !strings.Contains(err.Error(), "another kedge server (pid") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Errorf("restore while the data dir is in use: %v", err)
	}
	unlock()

	dst.ClusterResetRestorePath = filepath.Join(t.TempDir(), "missing.db")
	if err := restoreSnapshot(dst, quiet); err == nil || !strings.Contains(err.Error(), "--cluster-reset-restore-path") || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestRestoreCommand(t *testing.T) {
	cfg := Config{DataDir: "/srv/kedge", NodeName: "a", AdvertiseIP: net.ParseIP("10.0.0.1")}
	if got, want := restoreCommand(cfg, "/srv/s"), "kedge server --data-dir /srv/kedge --node-name a --advertise-address 10.0.0.1 --cluster-reset-restore-path /srv/s"; got != want {
		t.Errorf("%s\nwant %s", got, want)
	}
	cfg.DataDir = DefaultDataDir
	if got := restoreCommand(cfg, "/s"); strings.Contains(got, "--data-dir") {
		t.Errorf("%s", got)
	}
}
