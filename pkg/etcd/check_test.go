package etcd

import (
	"context"
	"errors"
	"fmt"
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
)

// makeData runs a real member on loopback ports in dir, writes keys and
// stops it cleanly.
func makeData(t *testing.T, dir string) {
	t.Helper()
	port := func() url.URL {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return url.URL{Scheme: "http", Host: l.Addr().String()}
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = "c", dir
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	client, peer := port(), port()
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = "c=" + peer.String()
	cfg.ListenMetricsUrls = nil
	e, err := embed.StartEtcd(cfg)
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 300 {
		if _, err := c.Put(ctx, fmt.Sprintf("/k/%d", i), strings.Repeat("v", 200)); err != nil {
			t.Fatal(err)
		}
	}
}

// damage overwrites n bytes at off in path.
func damage(t *testing.T, path string, off int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := make([]byte, n)
	for i := range junk {
		junk[i] = byte(0xa5 ^ i)
	}
	if _, err := f.WriteAt(junk, off); err != nil {
		t.Fatal(err)
	}
}

// TestCheckData: real etcd data passes; a damaged bbolt page (bbolt
// panics: the child dies, the test does not) and a damaged WAL record are
// each found and named; no data dir passes.
func TestCheckData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd")
	}
	argv := append([]string{os.Args[0]}, CheckDataArgs...)
	check := func(dir string) error {
		return CheckDataInChild(context.Background(), argv, dir)
	}
	if err := check(filepath.Join(t.TempDir(), "none")); err != nil {
		t.Fatalf("no data dir: %v", err)
	}
	good := t.TempDir()
	makeData(t, good)
	if err := check(good); err != nil {
		t.Fatalf("intact data: %v", err)
	}
	copyDir := func() string {
		dst := t.TempDir()
		if err := os.CopyFS(dst, os.DirFS(good)); err != nil {
			t.Fatal(err)
		}
		return dst
	}

	db := copyDir()
	dbFile := filepath.Join(db, "member", "snap", "db")
	st, _ := os.Stat(dbFile)
	// Pages 2 and 3 are bbolt's freelist and first bucket pages; clobber a
	// stretch of pages after the meta pages.
	damage(t, dbFile, 2*4096, int(min(st.Size()-2*4096, 6*4096)))
	err := check(db)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), db) {
		t.Fatalf("damaged bbolt: %v", err)
	}
	t.Logf("damaged bbolt: %v", err)

	w := copyDir()
	wals, _ := filepath.Glob(filepath.Join(w, "member", "wal", "*.wal"))
	if len(wals) == 0 {
		t.Fatal("no WAL file")
	}
	damage(t, wals[0], 4096, 64)
	err = check(w)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "WAL") {
		t.Fatalf("damaged WAL: %v", err)
	}
	t.Logf("damaged WAL: %v", err)
}
