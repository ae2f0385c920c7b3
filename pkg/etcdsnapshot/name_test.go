package etcdsnapshot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFileNameRoundTrip(t *testing.T) {
	at := time.Unix(1767225600, 0)
	for _, c := range []struct {
		prefix, node, local string
		compressed          bool
		wantPrefix, want    string
	}{
		{ScheduledPrefix, "s1", "s1", false, ScheduledPrefix, "s1"},
		{ScheduledPrefix, "edge-site-3", "", true, ScheduledPrefix, "edge-site-3"},
		{OnDemandPrefix, "a-b", "other", false, OnDemandPrefix, "a-b"},
		{"before-upgrade", "node-1", "node-1", false, "before-upgrade", "node-1"},
		{"before-upgrade", "node-1", "", false, "", ""}, // foreign prefix, node unknown
	} {
		name := FileName(c.prefix, c.node, at, c.compressed)
		in, ok := parseName(name, c.local)
		if !ok {
			t.Fatalf("%s: not parsed", name)
		}
		if in.Prefix != c.wantPrefix || in.Node != c.want || !in.Created.Equal(at) || in.Compressed != c.compressed {
			t.Errorf("%s: got %+v", name, in)
		}
	}
	if got := FileName(ScheduledPrefix, "s1", at, true); got != "etcd-snapshot-s1-1767225600.zst" {
		t.Errorf("name %q", got)
	}
	for _, bad := range []string{"x.db", "etcd-snapshot-s1-12", "etcd-snapshot-s1-1767225600.zip", ".part-1767225600", "on-demand-s1-1767225600.zst.part"} {
		if _, ok := parseName(bad, "s1"); ok {
			t.Errorf("%q parsed as a snapshot", bad)
		}
	}
}

func TestCheckPrefix(t *testing.T) {
	for _, ok := range []string{"on-demand", "pre_upgrade.1", "X"} {
		if err := CheckPrefix(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "../x", "a/b", "-x", "a b"} {
		err := CheckPrefix(bad)
		if err == nil || !strings.Contains(err.Error(), "--name") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// touch creates snapshot files named for node at the unix times given.
func touch(t *testing.T, dir, prefix, node string, times ...int64) {
	t.Helper()
	for _, s := range times {
		if err := os.WriteFile(filepath.Join(dir, FileName(prefix, node, time.Unix(s, 0), false)), []byte("x"), FileMode); err != nil {
			t.Fatal(err)
		}
	}
}

func names(list []Info) string {
	var out []string
	for _, in := range list {
		out = append(out, in.Name)
	}
	return strings.Join(out, ",")
}

func TestListPrune(t *testing.T) {
	dir := t.TempDir()
	touch(t, dir, ScheduledPrefix, "s1", 1700000300, 1700000100, 1700000500, 1700000200, 1700000400)
	touch(t, dir, ScheduledPrefix, "s2", 1700000000) // another server's, copied here
	touch(t, dir, OnDemandPrefix, "s1", 1700000050)
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := List(dir, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 7 || list[0].Node != "s2" || list[6].Name != "etcd-snapshot-s1-1700000500" {
		t.Fatalf("list: %s", names(list))
	}
	if n, ok, _ := Newest(dir, "s1"); !ok || n.Name != "etcd-snapshot-s1-1700000500" {
		t.Errorf("newest %v", n.Name)
	}
	deleted, err := Prune(dir, ScheduledPrefix, "s1", 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(deleted); got != "etcd-snapshot-s1-1700000100,etcd-snapshot-s1-1700000200,etcd-snapshot-s1-1700000300" {
		t.Errorf("pruned %s", got)
	}
	list, _ = List(dir, "s1")
	if got := names(list); got != "etcd-snapshot-s2-1700000000,on-demand-s1-1700000050,etcd-snapshot-s1-1700000400,etcd-snapshot-s1-1700000500" {
		t.Errorf("left %s", got)
	}
	if _, err := Prune(dir, ScheduledPrefix, "s1", 0); err == nil || !strings.Contains(err.Error(), "--snapshot-retention 0") {
		t.Errorf("retention 0: %v", err)
	}
	if d, err := Prune(dir, ScheduledPrefix, "s1", 5); err != nil || len(d) != 0 {
		t.Errorf("prune under retention: %v %v", d, err)
	}
	if l, err := List(filepath.Join(dir, "missing"), "s1"); err != nil || l != nil {
		t.Errorf("missing dir: %v %v", l, err)
	}
}

func TestDelete(t *testing.T) {
	dir := t.TempDir()
	touch(t, dir, OnDemandPrefix, "s1", 1700000001, 1700000002)
	_, err := Delete(dir, []string{"on-demand-s1-1700000001", "nope"})
	if err == nil || !strings.Contains(err.Error(), `no snapshot "nope"`) || !strings.Contains(err.Error(), "nothing deleted") {
		t.Fatalf("delete with a missing name: %v", err)
	}
	if l, _ := List(dir, "s1"); len(l) != 2 {
		t.Fatalf("a refused delete removed files: %s", names(l))
	}
	if _, err := Delete(dir, []string{"../" + filepath.Base(dir) + "/on-demand-s1-1700000001"}); err == nil {
		t.Fatal("a path was accepted as a name")
	}
	deleted, err := Delete(dir, []string{"on-demand-s1-1700000002"})
	if err != nil || names(deleted) != "on-demand-s1-1700000002" {
		t.Fatalf("%v %v", names(deleted), err)
	}
	if l, _ := List(dir, "s1"); names(l) != "on-demand-s1-1700000001" {
		t.Fatalf("left %s", names(l))
	}
}
