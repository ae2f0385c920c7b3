package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/testimage"
)

const webImage = testimage.Name

// TestAgentJoin: a server and an agent that joins it with the token; pods on
// both; pod-to-pod across nodes over flannel VXLAN, a Service and DNS from
// the agent's pod.
func TestAgentJoin(t *testing.T) {
	c := harness.NewCluster(t)
	image := testimage.Build(t)
	var a, w *harness.Node
	c.Step("boot and start server a", func() {
		a = startNode(t, c, image, "a")
		a.WaitReady(5 * time.Minute)
	})
	token := joinToken(t, a)
	c.Step("agent w joins with the agent token, Ready", func() {
		w = startNode(t, c, image, "w", "agent", "--server", "https://"+a.IP().String()+":6443", "--token", agentToken(t, a))
		waitNodeReady(c, a, w, 5*time.Minute)
	})
	c.Step("a pod on each node", func() {
		for _, n := range []*harness.Node{a, w} {
			overrides := fmt.Sprintf(`{"spec":{"nodeName":%q}}`, n.Name())
			if _, err := a.Kubectl("run", "web-"+n.Name(), "--image="+webImage, "--image-pull-policy=Never", "--port=8080", "--overrides="+overrides, "--labels=app=web"); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range []*harness.Node{a, w} {
			c.Eventually(3*time.Minute, "pod web-"+n.Name()+" Running", func() error {
				s, err := a.Kubectl("get", "pod", "web-"+n.Name(), "-o", "jsonpath={.status.phase}")
				if s != "Running" {
					return fmt.Errorf("phase %q, %v", s, err)
				}
				return nil
			})
		}
	})
	wIP := a.MustKubectl("get", "pod", "web-w", "-o", "jsonpath={.status.podIP}")
	aIP := a.MustKubectl("get", "pod", "web-a", "-o", "jsonpath={.status.podIP}")
	c.Step("pod on a → pod on w across nodes (VXLAN)", func() {
		c.Eventually(time.Minute, "a → "+wIP, func() error {
			out, err := a.Kubectl("exec", "web-a", "--", "/webapp", "get", "http://"+wIP+":8080/")
			if err != nil || !strings.HasPrefix(out, "hello from web-w") {
				return fmt.Errorf("%q, %v", out, err)
			}
			return nil
		})
	})
	c.Step("pod on w → pod on a, a Service and DNS from w", func() {
		a.MustKubectl("expose", "pod", "web-a", "--name=web", "--port=80", "--target-port=8080")
		c.Eventually(time.Minute, "w → "+aIP, func() error {
			out, err := a.Kubectl("exec", "web-w", "--", "/webapp", "get", "http://"+aIP+":8080/")
			if err != nil || !strings.HasPrefix(out, "hello from web-a") {
				return fmt.Errorf("%q, %v", out, err)
			}
			return nil
		})
		c.Eventually(time.Minute, "w → web.default.svc.cluster.local", func() error {
			out, err := a.Kubectl("exec", "web-w", "--", "/webapp", "get", "http://web.default.svc.cluster.local/")
			if err != nil || !strings.HasPrefix(out, "hello from web-a") {
				return fmt.Errorf("%q, %v", out, err)
			}
			return nil
		})
	})
	if out, err := w.Exec("ps", "-o", "rss=,args=", "-C", "kedge"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[2] == "agent" {
				t.Logf("agent w: kedge RSS %s KiB with one pod", f[0])
			}
		}
	}
	c.Step("a token for another CA and a wrong secret are refused; the cluster is unchanged", func() {
		cut := strings.LastIndex(token, "::") + 2
		for name, tc := range map[string]struct{ token, want string }{
			"x1": {"KEDGE1" + strings.Repeat("0", 64) + "::" + token[cut:], "does not match the --token's hash"},
			"x2": {token[:cut] + "not-the-secret", "--token"},
		} {
			n := c.AddNode(name, "agent", "--server", "https://"+a.IP().String()+":6443", "--token", tc.token)
			n.Start()
			c.Eventually(time.Minute, name+" refuses to join", func() error {
				if n.Running() {
					return fmt.Errorf("%s still running", name)
				}
				return nil
			})
			log, _ := os.ReadFile(n.LogFile())
			if !strings.Contains(string(log), tc.want) {
				t.Fatalf("%s: log does not say %q:\n%s", name, tc.want, log)
			}
		}
		if nodes := a.MustKubectl("get", "nodes", "-o", "name"); nodes != "node/a\nnode/w" {
			t.Fatalf("nodes after refused joins: %q", nodes)
		}
	})
	t.Log("\n" + c.Summary())
}

// joinToken reads the join token the first server wrote (servers and agents).
func joinToken(t *testing.T, server *harness.Node) string {
	t.Helper()
	return readToken(t, server, "/var/lib/kedge/server/token")
}

// agentToken reads the agent token the first server wrote (agents only).
func agentToken(t *testing.T, server *harness.Node) string {
	t.Helper()
	return readToken(t, server, "/var/lib/kedge/server/agent-token")
}

// readToken reads a token file in a server node.
func readToken(t *testing.T, server *harness.Node, path string) string {
	t.Helper()
	token, err := server.Exec("cat", path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(token)
}

// startNode boots a node with the test image in its images dir and starts
// kedge on it with args (a role, then flags; none: a first server).
func startNode(t *testing.T, c *harness.Cluster, image []byte, name string, args ...string) *harness.Node {
	t.Helper()
	n := c.AddNode(name, args...)
	testimage.Drop(t, n.DataDir(), image)
	n.Start()
	return n
}

// waitNodeReady waits until server sees node n Ready and n logged ready.
func waitNodeReady(c *harness.Cluster, server, n *harness.Node, timeout time.Duration) {
	c.Eventually(timeout, "node "+n.Name()+" Ready", func() error {
		if !n.LoggedReady() {
			return fmt.Errorf("%s has not logged ready yet", n.Name())
		}
		s, err := server.Kubectl("get", "node", n.Name(), "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if s != "True" {
			return fmt.Errorf("Ready=%q, %v", s, err)
		}
		return nil
	})
}
