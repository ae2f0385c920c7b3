package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
)

// TestDiskFull: a server whose etcd data lives on a small ext4 filesystem
// (a loop device) that is then filled: under --etcd-min-free writes are
// refused with the reason (reads, Leases go on; a Warning Event; kedge
// keeps running), under half of it etcd's NOSPACE alarm stops every write;
// freeing the space resumes writes, and after a restart every write is there.
func TestDiskFull(t *testing.T) {
	c := harness.NewCluster(t)
	const db = "/var/lib/kedge/server/db"
	a := c.AddNode("a", "--etcd-min-free=200Mi")
	c.Step("a 600 MiB ext4 filesystem for etcd's data", func() {
		img := filepath.Join(a.Dir(), "db.img")
		for _, cmd := range [][]string{
			{"truncate", "-s", "600M", img},
			{"mkfs.ext4", "-q", "-F", img},
			{"mkdir", "-p", db},
			{"mount", "-o", "loop", img, db},
			{"chmod", "0700", db},
		} {
			if out, err := a.Exec(cmd...); err != nil {
				t.Fatalf("%v: %v: %s", cmd, err, out)
			}
		}
	})
	c.Step("server a Ready; a ConfigMap written", func() {
		a.Start()
		a.WaitReady(5 * time.Minute)
		a.MustKubectl("create", "configmap", "before", "--from-literal=v=1")
		c.Eventually(time.Minute, "node a's Lease", func() error {
			_, err := a.Kubectl("get", "lease", "-n", "kube-node-lease", "a")
			return err
		})
	})
	c.Step("fill the filesystem to 150 MiB free: writes refused with the reason, reads and Leases go on, a Warning Event", func() {
		fill(t, a, db, 150<<20)
		c.Eventually(30*time.Second, "writes refused", func() error {
			out, err := a.Kubectl("create", "configmap", "refused", "--from-literal=v=1")
			if err == nil {
				a.MustKubectl("delete", "configmap", "refused")
				return fmt.Errorf("the create succeeded with %d MiB free", freeBytes(t, a, db)>>20)
			}
			if !strings.Contains(out, "under --etcd-min-free") {
				t.Fatalf("the refusal does not say why: %s", out)
			}
			t.Logf("refused: %s", out)
			return nil
		})
		if v := a.MustKubectl("get", "configmap", "before", "-o", "jsonpath={.data.v}"); v != "1" {
			t.Fatalf("read with the disk full: %q", v)
		}
		ev := a.MustKubectl("get", "events", "--field-selector", "reason=DataDirFull", "-o", "jsonpath={.items[*].message}")
		if !strings.Contains(ev, "--etcd-min-free") {
			t.Fatalf("no DataDirFull Event naming --etcd-min-free: %q", ev)
		}
		if !strings.Contains(a.LogSinceStart(), "data dir nearly full: writes stopped") {
			t.Fatalf("kedge's log does not say that writes stopped:\n%s", a.LogTail(3000))
		}
		// Leases go on: the node's heartbeat and the leader elections (a
		// lost lease would end the controllers) outlive their 10-40 s.
		beat := func() string {
			return a.MustKubectl("get", "lease", "-n", "kube-node-lease", "a", "-o", "jsonpath={.spec.renewTime}")
		}
		first := beat()
		time.Sleep(45 * time.Second)
		if !a.Running() {
			t.Fatalf("kedge exited with the disk nearly full:\n%s", a.LogTail(3000))
		}
		if again := beat(); again == first {
			t.Fatalf("the node's Lease was not renewed in 45 s (%s)", first)
		}
		if s := a.MustKubectl("get", "node", "a", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`); s != "True" {
			t.Fatalf("node a Ready=%q with the disk nearly full", s)
		}
	})
	c.Step("fill on to 60 MiB free: etcd's NOSPACE alarm, etcd refuses every write", func() {
		fill(t, a, db, 60<<20)
		c.Eventually(30*time.Second, "NOSPACE alarm", func() error {
			out, err := a.Exec("curl", "-sS", "--fail", "-m", "5", "--cacert", etcdTLS+"server-ca.crt", "--cert", etcdTLS+"client.crt", "--key", etcdTLS+"client.key",
				"-X", "POST", "-d", "{}", "https://127.0.0.1:2379/v3/maintenance/alarm")
			if err != nil || !strings.Contains(out, "NOSPACE") {
				return fmt.Errorf("alarms %q, %v", out, err)
			}
			return nil
		})
	})
	c.Step("free the space: writes resume (kedge restarted if a lost lease ended it)", func() {
		if out, err := a.Exec("sh", "-c", "rm "+db+"/filler-*"); err != nil {
			t.Fatalf("rm: %v: %s", err, out)
		}
		if !a.Running() {
			// Under the alarm no Lease can be renewed: a leader's
			// controllers end the process, which the service manager restarts.
			t.Logf("kedge exited under the NOSPACE alarm (%s); restarting it as systemd would", a.LogTail(300))
			a.Start()
			a.WaitReady(5 * time.Minute)
		}
		c.Eventually(60*time.Second, "writes accepted", func() error {
			_, err := a.Kubectl("create", "configmap", "after", "--from-literal=v=2")
			return err
		})
		ev := a.MustKubectl("get", "events", "--field-selector", "reason=DataDirSpaceRecovered", "-o", "name")
		if ev == "" {
			t.Fatal("no DataDirSpaceRecovered Event")
		}
	})
	c.Step("restart: every write there, etcd healthy", func() {
		a.Restart()
		a.WaitReady(5 * time.Minute)
		for name, want := range map[string]string{"before": "1", "after": "2"} {
			if v := a.MustKubectl("get", "configmap", name, "-o", "jsonpath={.data.v}"); v != want {
				t.Fatalf("configmap %s = %q after the restart, want %q", name, v, want)
			}
		}
		if err := etcdHealthy([]*harness.Node{a}); err != nil {
			t.Fatal(err)
		}
	})
	t.Log("\n" + c.Summary())
}

// etcdTLS holds a server's etcd client certificates.
const etcdTLS = "/var/lib/kedge/server/tls/etcd/"

// fill allocates db/filler so that left bytes stay free.
func fill(t *testing.T, n *harness.Node, db string, left int64) {
	t.Helper()
	grow := freeBytes(t, n, db) - left
	if grow <= 0 {
		t.Fatalf("only %d MiB free already", freeBytes(t, n, db)>>20)
	}
	if out, err := n.Exec("fallocate", "-l", strconv.FormatInt(grow, 10), db+"/filler-"+strconv.FormatInt(left, 10)); err != nil {
		t.Fatalf("fallocate: %v: %s", err, out)
	}
}

// freeBytes is the space available on the filesystem of dir in n.
func freeBytes(t *testing.T, n *harness.Node, dir string) int64 {
	t.Helper()
	out, err := n.Exec("df", "-B1", "--output=avail", dir)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	v, err := strconv.ParseInt(f[len(f)-1], 10, 64)
	if err != nil {
		t.Fatalf("df: %q", out)
	}
	return v
}
