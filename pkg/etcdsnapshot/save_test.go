package etcdsnapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func saveOne(t *testing.T, m *testMember, dir string, compress bool, bootstrap []byte) Info {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in, err := Save(ctx, m.client, SaveOptions{Dir: dir, Prefix: OnDemandPrefix, Node: m.name, Compress: compress, Bootstrap: bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestSaveRestore: a snapshot (plain and zstd) of a real member restores,
// through etcd's hash check, into a new single-member data dir that etcd
// serves with every key; the old data dir is moved aside; the sealed CAs
// come back and open only with the token.
func TestSaveRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real etcd members")
	}
	src := newMember(t, "s1")
	src.put(t, 200)
	dir := filepath.Join(t.TempDir(), "snapshots")
	sealedCAs, err := Seal(Bootstrap{Files: map[string][]byte{"server-ca.key": []byte("KEY")}, AgentSecret: "agent"}, "secret-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, compress := range []bool{false, true} {
		in := saveOne(t, src, dir, compress, sealedCAs)
		st, err := os.Stat(in.Path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != FileMode {
			t.Errorf("snapshot mode %v", st.Mode().Perm())
		}
		if d, _ := os.Stat(dir); d.Mode().Perm() != DirMode {
			t.Errorf("dir mode %v", d.Mode().Perm())
		}
		if in.Compressed != compress || in.Node != "s1" || in.Prefix != OnDemandPrefix || !strings.HasPrefix(in.Name, "on-demand-s1-") {
			t.Errorf("info %+v", in)
		}
		t.Logf("snapshot %s: %d bytes", in.Name, in.Size)

		etcdDir := filepath.Join(t.TempDir(), "db", "etcd")
		if err := os.MkdirAll(etcdDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(etcdDir, "old"), []byte("old data"), 0o600); err != nil {
			t.Fatal(err)
		}
		peer := "http://127.0.0.1:" + itoa(freePort(t))
		begin := time.Now()
		p, err := Prepare(RestoreOptions{Snapshot: in.Path, EtcdDir: etcdDir, Name: "r1", PeerURL: peer})
		if err != nil {
			t.Fatal(err)
		}
		aside, err := p.Commit()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("restore of %s took %s", in.Name, time.Since(begin).Round(time.Millisecond))
		if raw, err := os.ReadFile(filepath.Join(aside, "old")); err != nil || string(raw) != "old data" {
			t.Errorf("old data not kept aside in %s: %v", aside, err)
		}
		if string(p.Bootstrap) != string(sealedCAs) {
			t.Errorf("sealed CAs not in the restored data")
		}
		b, err := Open(p.Bootstrap, "secret-1")
		if err != nil || string(b.Files["server-ca.key"]) != "KEY" || b.AgentSecret != "agent" {
			t.Errorf("open: %+v %v", b, err)
		}
		if _, err := Open(p.Bootstrap, "secret-2"); !errors.Is(err, ErrWrongToken) {
			t.Errorf("wrong token: %v", err)
		}
		if _, err := os.Stat(etcdDir + ".restoring"); !os.IsNotExist(err) {
			t.Errorf("restoring dir left: %v", err)
		}
		r := startMember(t, "r1", etcdDir, peer)
		if n := r.count(t); n != 200 {
			t.Errorf("restored member has %d keys, want 200", n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		members, err := r.client.MemberList(ctx)
		cancel()
		if err != nil || len(members.Members) != 1 || members.Members[0].Name != "r1" {
			t.Errorf("members %v %v", members, err)
		}
		r.stop()
	}
	if _, err := Save(context.Background(), src.client, SaveOptions{Dir: "relative", Prefix: OnDemandPrefix, Node: "s1"}); err == nil || !strings.Contains(err.Error(), "--etcd-snapshot-dir") {
		t.Errorf("relative dir: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestRestoreBadInput: a missing, truncated, damaged or foreign file is a
// clear error, and the existing data dir is left exactly as it was.
func TestRestoreBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd member")
	}
	src := newMember(t, "s1")
	src.put(t, 50)
	dir := filepath.Join(t.TempDir(), "snapshots")
	plain := saveOne(t, src, dir, false, nil)
	time.Sleep(time.Second) // the next name is one second later
	zst := saveOne(t, src, dir, true, nil)
	raw, _ := os.ReadFile(plain.Path)
	rawZst, _ := os.ReadFile(zst.Path)
	bad := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(bad, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := append([]byte(nil), raw...)
	flipped[len(flipped)/2] ^= 0xff
	for _, c := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(bad, "nope"), "no such file"},
		{"truncated", write("truncated", raw[:len(raw)-1000]), "truncated"},
		{"damaged", write("damaged", flipped), "sha256"},
		{"truncated zstd", write("truncated.zst", rawZst[:len(rawZst)/2]), "zstd"},
		{"not a snapshot", write("text", []byte("hello, this is not etcd\n")), "not an etcd snapshot"},
		{"empty", write("empty", nil), "too short"},
		{"a directory", bad, "not a snapshot file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			etcdDir := filepath.Join(t.TempDir(), "etcd")
			if err := os.MkdirAll(etcdDir, 0o700); err != nil {
				t.Fatal(err)
			}
			marker := filepath.Join(etcdDir, "keep")
			if err := os.WriteFile(marker, []byte("data"), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := Prepare(RestoreOptions{Snapshot: c.path, EtcdDir: etcdDir, Name: "r1", PeerURL: "http://127.0.0.1:2380"})
			if err == nil {
				p.Discard()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q lacks %q", err, c.want)
			}
			t.Logf("%s: %v", c.name, err)
			if got, err := os.ReadFile(marker); err != nil || string(got) != "data" {
				t.Errorf("existing data changed: %v", err)
			}
			entries, _ := os.ReadDir(filepath.Dir(etcdDir))
			if len(entries) != 1 {
				var n []string
				for _, e := range entries {
					n = append(n, e.Name())
				}
				t.Errorf("left beside the data dir: %v", n)
			}
		})
	}
}
