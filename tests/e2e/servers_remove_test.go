package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/testimage"
)

// TestServerRemove: servers leave the etcd membership. Three servers (a; b
// and c join a). With c down, removing b is refused with the quorum
// arithmetic and nothing changes. With c back, deleting c's Node removes
// c's etcd member first: c stops, keeps its etcd data aside, and joins again
// when restarted with --server. `kedge etcd member-remove` removes c, then
// a; a restarted without --server refuses to start a second cluster; b, the
// last member, cannot be removed and still serves.
func TestServerRemove(t *testing.T) {
	c := harness.NewCluster(t)
	image := testimage.Build(t)
	var a, b, cc *harness.Node
	c.Step("servers a, b, c; three voting members", func() {
		a = startNode(t, c, image, "a")
		a.WaitReady(5 * time.Minute)
		token := joinToken(t, a)
		aURL := "https://" + a.IP().String() + ":6443"
		b = startNode(t, c, image, "b", "--server", aURL, "--token", token)
		b.WaitReady(5 * time.Minute)
		cc = startNode(t, c, image, "c", "--server", aURL, "--token", token)
		cc.WaitReady(5 * time.Minute)
		waitNodeReady(c, a, cc, 5*time.Minute)
		waitVoters(c, a, "a voter,b voter,c voter", 2*time.Minute)
		list := etcdCmd(t, c, a, "member-list")
		for _, name := range []string{"a", "b", "c"} {
			if !regexpLine(list, `^`+name+` +[0-9a-f]+ +voter +https://\S+:2380 +healthy$`) {
				t.Fatalf("member-list lacks a healthy voter %s:\n%s", name, list)
			}
		}
		if fin := a.MustKubectl("get", "node", "c", "-o", "jsonpath={.metadata.finalizers}"); !strings.Contains(fin, "kedge.io/etcd-member") {
			t.Fatalf("server Node c has finalizers %q", fin)
		}
	})
	c.Step("c down: removing b is refused (quorum), nothing changes", func() {
		cc.Kill()
		out, err := a.Exec(c.Bin(), "etcd", "member-remove", "b")
		if err == nil {
			t.Fatalf("member-remove b with c down succeeded:\n%s", out)
		}
		for _, w := range []string{"refusing to remove b", "leave 2 voting members (a, c)", "quorum is 2", "only 1 of them answer (a)", "bring c back first"} {
			if !strings.Contains(out, w) {
				t.Errorf("refusal %q lacks %q", out, w)
			}
		}
		t.Logf("refused as expected: %s", out)
		waitVoters(c, a, "a voter,b voter,c voter", 10*time.Second)
		if !b.Running() {
			t.Fatal("b stopped")
		}
	})
	c.Step("c back; deleting Node c removes its etcd member, c stops", func() {
		cc.Start()
		waitNodeReady(c, a, cc, 5*time.Minute)
		c.Eventually(2*time.Minute, "etcd healthy", func() error { return etcdHealthy([]*harness.Node{a, b, cc}) })
		a.MustKubectl("delete", "node", "c", "--wait=false")
		waitVoters(c, a, "a voter,b voter", time.Minute)
		c.Eventually(time.Minute, "Node c gone", func() error {
			if out, err := a.Kubectl("get", "node", "c", "-o", "name"); err == nil {
				return fmt.Errorf("still there: %s", out)
			}
			return nil
		})
		waitRemoved(t, c, cc)
	})
	c.Step("c restarted with --server joins again", func() {
		cc.Start()
		waitNodeReady(c, a, cc, 5*time.Minute)
		waitVoters(c, a, "a voter,b voter,c voter", 2*time.Minute)
		if _, err := os.Stat(filepath.Join(cc.DataDir(), "server", "removed")); !os.IsNotExist(err) {
			t.Errorf("the removal marker is still there after the rejoin: %v", err)
		}
	})
	c.Step("member-remove c, then a; a without --server refuses to start", func() {
		out := etcdCmd(t, c, a, "member-remove", "c")
		if !strings.Contains(out, "removed etcd member c") {
			t.Fatalf("member-remove c: %s", out)
		}
		waitRemoved(t, c, cc)
		out = etcdCmd(t, c, b, "member-remove", "a")
		if !strings.Contains(out, "removed etcd member a") {
			t.Fatalf("member-remove a: %s", out)
		}
		waitVoters(c, b, "b voter", time.Minute)
		waitRemoved(t, c, a)
		a.Start()
		c.Eventually(time.Minute, "a refuses to start", func() error {
			if a.Running() {
				return fmt.Errorf("still running")
			}
			return nil
		})
		log, _ := os.ReadFile(a.LogFile())
		if !strings.Contains(string(log), "start it with --server") {
			t.Fatalf("a's refusal does not say how to rejoin:\n%s", a.LogTail(2000))
		}
	})
	c.Step("b, the only member, cannot be removed and still serves", func() {
		out, err := b.Exec(c.Bin(), "etcd", "member-remove", "b")
		if err == nil || !strings.Contains(out, "only voting member") {
			t.Fatalf("member-remove of the last member: %v: %s", err, out)
		}
		b.MustKubectl("create", "configmap", "after-removals", "--from-literal=k=v")
		if v := b.MustKubectl("get", "configmap", "after-removals", "-o", "jsonpath={.data.k}"); v != "v" {
			t.Fatalf("configmap: %q", v)
		}
	})
	t.Log("\n" + c.Summary())
}

// etcdCmd runs `kedge etcd args...` on n and fails the test on error.
func etcdCmd(t *testing.T, c *harness.Cluster, n *harness.Node, args ...string) string {
	t.Helper()
	out, err := n.Exec(append([]string{c.Bin(), "etcd"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitRemoved waits until n's kedge has stopped because its etcd member was
// removed, with its etcd data moved aside and the removal recorded.
func waitRemoved(t *testing.T, c *harness.Cluster, n *harness.Node) {
	t.Helper()
	c.Eventually(time.Minute, n.Name()+" stops: removed from etcd", func() error {
		if n.Running() {
			return fmt.Errorf("still running")
		}
		return nil
	})
	log, _ := os.ReadFile(n.LogFile())
	if !strings.Contains(string(log), "removed from the cluster's etcd membership") {
		t.Fatalf("%s's log does not say it was removed:\n%s", n.Name(), n.LogTail(2000))
	}
	if _, err := os.Stat(filepath.Join(n.DataDir(), "server", "removed")); err != nil {
		t.Fatalf("%s: no removal marker: %v", n.Name(), err)
	}
	aside, _ := filepath.Glob(filepath.Join(n.DataDir(), "server", "db.removed-*"))
	if len(aside) == 0 {
		t.Fatalf("%s: etcd data not moved aside", n.Name())
	}
}

// regexpLine reports whether a line of out matches expr.
func regexpLine(out, expr string) bool {
	re := regexp.MustCompile(expr)
	for _, l := range strings.Split(out, "\n") {
		if re.MatchString(strings.TrimSpace(l)) {
			return true
		}
	}
	return false
}
