package e2e

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/testimage"
)

// snapshotObjects is how many ConfigMaps the restore test writes.
const snapshotObjects = 40

// TestEtcdSnapshotRestore: disaster recovery. Three servers (a; b and c
// join a) hold a namespace of ConfigMaps and a Secret. b takes a snapshot
// (`kedge etcd-snapshot save`); a ConfigMap written after it must not come
// back. Every server's data dir is destroyed. a restores b's snapshot with
// --cluster-reset-restore-path (refused first without --token: a's data
// dir has no CAs any more; the snapshot carries them, sealed with the
// token), starts as a new single-member cluster; b and c, with fresh data
// dirs, join it again with --server and --token. Every object written
// before the snapshot is back, on every server. The restore time is
// measured and printed. Then b and c die: a, without quorum, is reset
// (--cluster-reset) to a single-member cluster with all its data, and b and
// c, their server state moved aside, join it again.
func TestEtcdSnapshotRestore(t *testing.T) {
	c := harness.NewCluster(t)
	image := testimage.Build(t)
	var a, b, cc *harness.Node
	var token, snapName string
	c.Step("servers a, b, c; three voting members", func() {
		a = startNode(t, c, image, "a")
		a.WaitReady(5 * time.Minute)
		token = joinToken(t, a)
		aURL := "https://" + a.IP().String() + ":6443"
		b = startNode(t, c, image, "b", "--server", aURL, "--token", token)
		b.WaitReady(5 * time.Minute)
		cc = startNode(t, c, image, "c", "--server", aURL, "--token", token)
		cc.WaitReady(5 * time.Minute)
		waitVoters(c, a, "a voter,b voter,c voter", 2*time.Minute)
	})
	c.Step("write objects", func() {
		a.MustKubectl("create", "namespace", "snap")
		for i := range snapshotObjects {
			a.MustKubectl("-n", "snap", "create", "configmap", fmt.Sprintf("cm-%02d", i), fmt.Sprintf("--from-literal=i=%d", i))
		}
		a.MustKubectl("-n", "snap", "create", "secret", "generic", "s", "--from-literal=password=hunter2")
	})
	var snapHost string
	c.Step("b: kedge etcd-snapshot save (zstd), ls", func() {
		out, err := b.Exec(c.Bin(), "etcd-snapshot", "save", "--etcd-snapshot-compress")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("b$ kedge etcd-snapshot save --etcd-snapshot-compress\n%s", out)
		m := regexp.MustCompile(`saved snapshot (on-demand-b-[0-9]+\.zst) \(`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("save printed %q", out)
		}
		snapName = m[1]
		ls, err := b.Exec(c.Bin(), "etcd-snapshot", "ls")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("b$ kedge etcd-snapshot ls\n%s", ls)
		if !regexpLine(ls, `^`+regexp.QuoteMeta(snapName)+` +[0-9.]+ [KM]iB +\S+ +b$`) {
			t.Fatalf("ls lacks %s of node b:\n%s", snapName, ls)
		}
		snapHost = filepath.Join(b.DataDir(), "server", "db", "snapshots", snapName)
		st, err := os.Stat(snapHost)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("snapshot mode %v, want 0600", st.Mode().Perm())
		}
		if d, _ := os.Stat(filepath.Dir(snapHost)); d.Mode().Perm() != 0o700 {
			t.Errorf("snapshot dir mode %v, want 0700", d.Mode().Perm())
		}
		a.MustKubectl("-n", "snap", "create", "configmap", "after-snapshot", "--from-literal=i=late")
	})
	backup := filepath.Join(a.Dir(), "backup", snapName) // a's own disk, outside its data dir
	c.Step("destroy every server's data dir", func() {
		if err := os.MkdirAll(filepath.Dir(backup), 0o700); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(snapHost)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(backup, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		// No `kedge killall` here: it unmounts the data dir itself when that
		// is a mount point, as each node's is (a bind mount).
		for _, n := range []*harness.Node{a, b, cc} {
			n.Stop()
			wipe(t, n.DataDir())
		}
	})
	var restoreTook, readyTook time.Duration
	c.Step("a: restore b's snapshot (--cluster-reset-restore-path), start", func() {
		args := append(a.Argv()[1:], "--cluster-reset-restore-path", backup)
		out, err := a.Exec(append([]string{c.Bin()}, args...)...)
		if err == nil || !strings.Contains(out, "needs --token") {
			t.Fatalf("restore on a machine without the CAs, without --token: %v\n%s", err, out)
		}
		t.Logf("a$ kedge server … --cluster-reset-restore-path %s (no --token): refused:\n%s", backup, lastLines(out, 2))
		begin := time.Now()
		out, err = a.Exec(append([]string{c.Bin()}, append(args, "--token", token)...)...)
		restoreTook = time.Since(begin)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("a$ kedge server … --cluster-reset-restore-path %s --token …  (%s):\n%s", backup, restoreTook.Round(time.Millisecond), lastLines(out, 4))
		if !strings.Contains(out, "this server is now the only member of a new etcd cluster") || !strings.Contains(out, "--server https://"+a.IP().String()+":6443") {
			t.Fatalf("restore printed no instructions:\n%s", out)
		}
		if got := joinToken(t, a); got != token {
			t.Fatalf("restored token %q, want the cluster's %q", got, token)
		}
		a.Start()
		readyTook = a.WaitReady(5 * time.Minute)
		t.Logf("restore: %s (command) + %s (start to node Ready) = %s", restoreTook.Round(time.Millisecond), readyTook.Round(time.Millisecond), (restoreTook + readyTook).Round(time.Millisecond))
		waitVoters(c, a, "a voter", time.Minute)
		checkRestored(t, a)
	})
	c.Step("b and c, fresh data dirs, join a again", func() {
		begin := time.Now()
		b.Start()
		b.WaitReady(5 * time.Minute)
		cc.Start()
		cc.WaitReady(5 * time.Minute)
		waitVoters(c, a, "a voter,b voter,c voter", 2*time.Minute)
		t.Logf("b and c joined in %s", time.Since(begin).Round(time.Millisecond))
		for _, n := range []*harness.Node{b, cc} {
			checkRestored(t, n)
		}
	})
	c.Step("quorum lost (b, c killed): a --cluster-reset keeps every object; b and c rejoin", func() {
		a.MustKubectl("-n", "snap", "create", "configmap", "after-restore", "--from-literal=i=r")
		b.Kill()
		cc.Kill()
		a.Stop()
		begin := time.Now()
		out, err := a.Exec(append([]string{c.Bin()}, append(a.Argv()[1:], "--cluster-reset")...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("a$ kedge server … --cluster-reset  (%s):\n%s", time.Since(begin).Round(time.Millisecond), lastLines(out, 2))
		if !strings.Contains(out, "etcd membership reset") || !strings.Contains(out, "this server is now the only member") {
			t.Fatalf("--cluster-reset printed:\n%s", out)
		}
		a.Start()
		a.WaitReady(5 * time.Minute)
		waitVoters(c, a, "a voter", time.Minute)
		checkRestored(t, a)
		if v := a.MustKubectl("-n", "snap", "get", "configmap", "after-restore", "-o", "jsonpath={.data.i}"); v != "r" {
			t.Errorf("after-restore, written before the reset: %q", v)
		}
		for _, n := range []*harness.Node{b, cc} {
			server := filepath.Join(n.DataDir(), "server")
			if err := os.Rename(server, server+".before-reset"); err != nil {
				t.Fatal(err)
			}
			n.Start()
			n.WaitReady(5 * time.Minute)
		}
		waitVoters(c, a, "a voter,b voter,c voter", 2*time.Minute)
		checkRestored(t, cc)
	})
	c.Step("a: etcd-snapshot save --name, ls, prune, delete", func() {
		for range 3 {
			t.Logf("a$ kedge etcd-snapshot save --name pre-upgrade\n%s", mustExec(t, a, c.Bin(), "etcd-snapshot", "save", "--name", "pre-upgrade"))
			time.Sleep(1100 * time.Millisecond) // one name per second
		}
		ls := mustExec(t, a, c.Bin(), "etcd-snapshot", "ls")
		t.Logf("a$ kedge etcd-snapshot ls\n%s", ls)
		if strings.Count(ls, "pre-upgrade-a-") != 3 {
			t.Fatalf("ls:\n%s", ls)
		}
		out := mustExec(t, a, c.Bin(), "etcd-snapshot", "prune", "--name", "pre-upgrade", "--snapshot-retention", "1")
		t.Logf("a$ kedge etcd-snapshot prune --name pre-upgrade --snapshot-retention 1\n%s", out)
		if strings.Count(out, "deleted snapshot pre-upgrade-a-") != 2 {
			t.Fatalf("prune: %s", out)
		}
		left := regexp.MustCompile(`pre-upgrade-a-[0-9]+`).FindString(mustExec(t, a, c.Bin(), "etcd-snapshot", "ls"))
		out = mustExec(t, a, c.Bin(), "etcd-snapshot", "delete", left)
		t.Logf("a$ kedge etcd-snapshot delete %s\n%s", left, out)
		if out, err := a.Exec(c.Bin(), "etcd-snapshot", "delete", left); err == nil || !strings.Contains(out, "no snapshot") {
			t.Fatalf("delete twice: %v %s", err, out)
		} else {
			t.Logf("a$ kedge etcd-snapshot delete %s (again)\n%s", left, out)
		}
	})
	t.Log("\n" + c.Summary())
}

// checkRestored checks, through n's apiserver, that every object written
// before the snapshot is back and the one written after it is not.
func checkRestored(t *testing.T, n *harness.Node) {
	t.Helper()
	out := n.MustKubectl("-n", "snap", "get", "configmaps", "-o", `jsonpath={range .items[*]}{.metadata.name}={.data.i}{"\n"}{end}`)
	got := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = v
		}
	}
	for i := range snapshotObjects {
		if v := got[fmt.Sprintf("cm-%02d", i)]; v != strconv.Itoa(i) {
			t.Errorf("%s: configmap cm-%02d = %q after the restore", n.Name(), i, v)
		}
	}
	if _, ok := got["after-snapshot"]; ok {
		t.Errorf("%s: after-snapshot, written after the snapshot, is back", n.Name())
	}
	if pw := n.MustKubectl("-n", "snap", "get", "secret", "s", "-o", "jsonpath={.data.password}"); pw != "aHVudGVyMg==" {
		t.Errorf("%s: secret s: %q", n.Name(), pw)
	}
	if !t.Failed() {
		t.Logf("%s: %d configmaps and the secret are back, after-snapshot is not", n.Name(), snapshotObjects)
	}
}

// TestEtcdCorruptStart: a server whose etcd database is damaged (bbolt
// pages overwritten, as a power loss on a bad disk leaves them) refuses to
// start, says so and prints the command that restores its newest snapshot,
// and leaves the data as it was; with --etcd-auto-restore (config.yaml) it
// restores that snapshot itself, keeps the damaged data aside and serves
// what the snapshot holds.
func TestEtcdCorruptStart(t *testing.T) {
	c := harness.NewCluster(t)
	a := c.AddNode("a")
	var snapName string
	c.Step("server a; configmap, snapshot, configmap", func() {
		a.Start()
		a.WaitReady(5 * time.Minute)
		a.MustKubectl("create", "configmap", "before", "--from-literal=k=v")
		out := mustExec(t, a, c.Bin(), "etcd-snapshot", "save")
		t.Logf("a$ kedge etcd-snapshot save\n%s", out)
		snapName = regexp.MustCompile(`on-demand-a-[0-9]+`).FindString(out)
		a.MustKubectl("create", "configmap", "after", "--from-literal=k=v")
	})
	db := filepath.Join(a.DataDir(), "server", "db", "etcd", "member", "snap", "db")
	var damaged [32]byte
	c.Step("damage etcd's database; a refuses to start", func() {
		a.Stop()
		f, err := os.OpenFile(db, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		junk := make([]byte, 16*4096)
		for i := range junk {
			junk[i] = byte(0x5a ^ i)
		}
		if _, err := f.WriteAt(junk, 2*4096); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		damaged = sha256.Sum256([]byte(readHost(t, db)))
		a.Start()
		c.Eventually(2*time.Minute, "a refuses to start", func() error {
			if a.Running() {
				return fmt.Errorf("still running")
			}
			return nil
		})
		log := a.LogSinceStart()
		want := "kedge server --node-name a --advertise-address " + a.IP().String() + " --cluster-reset-restore-path /var/lib/kedge/server/db/snapshots/" + snapName
		if !strings.Contains(log, "etcd's data is damaged") || !strings.Contains(log, want) || !strings.Contains(log, "--etcd-auto-restore") {
			t.Fatalf("the refusal lacks the damage or %q:\n%s", want, a.LogTail(3000))
		}
		t.Logf("a refused to start:\n%s", lastLines(log, 1))
		if sha256.Sum256([]byte(readHost(t, db))) != damaged {
			t.Fatal("the refused start changed the damaged database")
		}
	})
	c.Step("--etcd-auto-restore: a restores the snapshot and serves it", func() {
		if err := os.WriteFile(filepath.Join(a.Dir(), "etc-kedge", "config.yaml"), []byte("etcd-auto-restore: true\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		a.Start()
		took := a.WaitReady(5 * time.Minute)
		t.Logf("a restored and Ready in %s", took.Round(time.Millisecond))
		log := a.LogSinceStart()
		if !strings.Contains(log, "etcd restored from the newest local snapshot") {
			t.Fatalf("no restore logged:\n%s", a.LogTail(3000))
		}
		if v := a.MustKubectl("get", "configmap", "before", "-o", "jsonpath={.data.k}"); v != "v" {
			t.Errorf("before: %q", v)
		}
		if out, err := a.Kubectl("get", "configmap", "after"); err == nil {
			t.Errorf("after, written after the snapshot, is back: %s", out)
		}
		old, _ := filepath.Glob(filepath.Join(a.DataDir(), "server", "db", "etcd-old-*", "member", "snap", "db"))
		if len(old) != 1 || sha256.Sum256([]byte(readHost(t, old[0]))) != damaged {
			t.Errorf("the damaged data is not kept aside: %v", old)
		}
	})
	t.Log("\n" + c.Summary())
}

// wipe removes everything in dir (a node's data dir, a bind mount: the
// directory itself stays).
func wipe(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

func readHost(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func mustExec(t *testing.T, n *harness.Node, args ...string) string {
	t.Helper()
	out, err := n.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
