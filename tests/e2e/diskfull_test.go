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
// (a loop device) that is then filled up to under --etcd-min-free: writes
// are refused with etcd's "database space exceeded", reads go on, a
// Warning Event says why, kedge keeps running; freeing the space resumes
// writes without a restart, and after a restart every write is there.
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
	})
	c.Step("fill the filesystem to 120 MiB free: writes refused, reads work, a Warning Event", func() {
		avail := freeBytes(t, a, db)
		if out, err := a.Exec("fallocate", "-l", strconv.FormatInt(avail-120<<20, 10), db+"/filler"); err != nil {
			t.Fatalf("fallocate: %v: %s", err, out)
		}
		c.Eventually(30*time.Second, "writes refused", func() error {
			out, err := a.Kubectl("create", "configmap", "refused", "--from-literal=v=1")
			if err == nil {
				a.MustKubectl("delete", "configmap", "refused")
				return fmt.Errorf("the create succeeded with %d MiB free", freeBytes(t, a, db)>>20)
			}
			if !strings.Contains(out, "database space exceeded") {
				t.Fatalf("the refusal does not say why: %s", out)
			}
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
		time.Sleep(25 * time.Second) // leases cannot be renewed (10 s deadline): nothing may crash
		if !a.Running() {
			t.Fatalf("kedge exited with the disk full:\n%s", a.LogTail(3000))
		}
	})
	c.Step("free the space: writes resume without a restart", func() {
		if out, err := a.Exec("rm", db+"/filler"); err != nil {
			t.Fatalf("rm: %v: %s", err, out)
		}
		c.Eventually(30*time.Second, "writes accepted", func() error {
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
