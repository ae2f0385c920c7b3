package skew

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kedge-io/kedge/pkg/etcd/etcdtest"
)

// TestGate: servers record their versions in a real etcd (one member, a);
// a server two minors away, and a server older than the datastore once it
// moved, are refused; the record of a server that is not an etcd member
// (b here, like a removed server) does not count; the record file is
// written to the data dir.
func TestGate(t *testing.T) {
	c := etcdtest.Start(t, "a")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := func(name, v string) (string, error) {
		dir := t.TempDir()
		g := NewGate(GateConfig{Name: name, Version: v, DBDir: dir, Etcd: func() (*clientv3.Client, error) { return c, nil }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err := g.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer g.Stop(ctx)
		if err := g.Ready(ctx); err != nil {
			return "", err
		}
		return ReadRecord(dir)
	}
	if rec, err := run("a", "v1.36.4"); err != nil || rec != "v1.36.4" {
		t.Fatalf("first server: record %q, %v", rec, err)
	}
	if _, err := run("b", "v1.38.0"); err == nil || !strings.Contains(err.Error(), "server b runs Kubernetes v1.38.0 and server a runs v1.36.4") {
		t.Fatalf("two minors newer: %v", err)
	}
	if _, err := run("b", "v1.37.2"); err != nil {
		t.Fatalf("one minor newer: %v", err)
	}
	servers, datastore, err := Versions(ctx, c)
	if err != nil || datastore != "v1.37.2" || servers["a"] != "v1.36.4" || len(servers) != 1 {
		t.Fatalf("versions %v datastore %q, %v; want only member a's and the datastore at v1.37.2", servers, datastore, err)
	}
	if raw, err := c.Get(ctx, ServersPrefix+"b"); err != nil || len(raw.Kvs) != 1 || string(raw.Kvs[0].Value) != "v1.37.2" {
		t.Fatalf("b's record: %v, %v", raw, err)
	}
	if _, err := run("c", "v1.36.4"); err == nil || !strings.Contains(err.Error(), "downgrade is refused") {
		t.Fatalf("a new 1.36 server after the datastore moved to 1.37: %v", err)
	}
	if _, err := run("a", "v1.37.2"); err != nil {
		t.Fatalf("a upgraded: %v", err)
	}
	// A refused server records nothing.
	if raw, err := c.Get(ctx, ServersPrefix+"c"); err != nil || len(raw.Kvs) != 0 {
		t.Fatalf("refused server c recorded %v, %v", raw, err)
	}
}

func TestReadRecord(t *testing.T) {
	dir := t.TempDir()
	if v, err := ReadRecord(dir); v != "" || err != nil {
		t.Fatalf("no record: %q, %v", v, err)
	}
	if err := writeRecord(dir, "v1.36.4"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, RecordFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("record file: %v %v", fi, err)
	}
	if v, err := ReadRecord(dir); v != "v1.36.4" || err != nil {
		t.Fatalf("record: %q, %v", v, err)
	}
}
