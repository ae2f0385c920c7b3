package e2e

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
)

const pauseImage = "kedge.local/pause:1.0"

// TestHarnessTwoIndependentServers proves the harness with what kedge has
// today: two single-node `kedge server`s (each with containerd, kubelet,
// flannel, kube-proxy and CoreDNS) side by side on one host, a pod on each,
// the bridge between them, a network cut, and a kill -9 and restart.
func TestHarnessTwoIndependentServers(t *testing.T) {
	c := harness.NewCluster(t)
	var a, b *harness.Node
	c.Step("boot nodes a, b (namespaces, mounts, veths, cgroups)", func() {
		a = c.AddNode("a")
		b = c.AddNode("b")
	})
	c.Step("start kedge server on a and b, both Ready", func() {
		a.Start()
		b.Start()
		parallel(t, a, b, func(n *harness.Node) { n.WaitReady(5 * time.Minute) })
	})
	c.Step("pod Running on each node (kubectl run)", func() {
		parallel(t, a, b, func(n *harness.Node) { runPod(c, n, "p") })
	})
	bAPI := net.JoinHostPort(b.IP().String(), "6443")
	c.Step("a connects to b:6443 over the bridge", func() {
		c.Eventually(30*time.Second, "a → "+bAPI, func() error { return a.DialTCP(bAPI, 3*time.Second) })
	})
	c.Step("cut off b: a cannot connect", func() {
		b.CutOff()
		if err := a.DialTCP(bAPI, 3*time.Second); err == nil {
			t.Fatalf("a connected to %s while b is cut off", bAPI)
		} else {
			t.Logf("a → %s with b cut off: %v", bAPI, err)
		}
	})
	c.Step("reconnect b: a connects again", func() {
		b.Reconnect()
		c.Eventually(30*time.Second, "a → "+bAPI+" after reconnect", func() error { return a.DialTCP(bAPI, 3*time.Second) })
	})
	before := podState(t, a, "p")
	if !strings.HasPrefix(before, "Running 0 containerd://") {
		t.Fatalf("pod p on a: %q", before)
	}
	c.Step("kill -9 kedge on a", func() { a.Kill() })
	c.Step("restart a: Ready again", func() {
		a.Start()
		a.WaitReady(5 * time.Minute)
	})
	c.Step("a's pod still Running, same container, restartCount 0", func() {
		c.Eventually(time.Minute, "pod p on a after restart", func() error {
			after := podState(t, a, "p")
			if after != before {
				return fmt.Errorf("pod p: %q, before the kill %q", after, before)
			}
			return nil
		})
	})
	c.Step("b unaffected: Ready, pod Running", func() {
		b.WaitReady(time.Minute)
		if s := podState(t, b, "p"); !strings.HasPrefix(s, "Running ") {
			t.Fatalf("pod p on b: %s", s)
		}
	})
}

// runPod starts a pod with the embedded pause image and waits until it runs.
func runPod(c *harness.Cluster, n *harness.Node, name string) {
	// The default ServiceAccount appears shortly after the apiserver.
	c.Eventually(2*time.Minute, "kubectl run "+name+" on "+n.Name(), func() error {
		_, err := n.Kubectl("run", name, "--image="+pauseImage, "--image-pull-policy=Never", "--restart=Never")
		if err != nil && strings.Contains(err.Error(), "AlreadyExists") {
			return nil
		}
		return err
	})
	c.Eventually(3*time.Minute, "pod "+name+" Running on "+n.Name(), func() error {
		s, err := n.Kubectl("get", "pod", name, "-o", "jsonpath={.status.phase} {.spec.nodeName}")
		if err != nil {
			return err
		}
		if s != "Running "+n.Name() {
			return fmt.Errorf("pod %s: phase and node %q", name, s)
		}
		return nil
	})
}

// podState is "<phase> <restartCount> <containerID> <startedAt>" of a
// one-container pod.
func podState(t *testing.T, n *harness.Node, name string) string {
	t.Helper()
	out, err := n.Kubectl("get", "pod", name, "-o",
		"jsonpath={.status.phase} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].state.running.startedAt}")
	if err != nil {
		return "error: " + err.Error()
	}
	return out
}

// parallel runs f for each node at once and waits. f may fail the test:
// t.Fatal ends only its goroutine, so the failure is checked afterwards.
func parallel(t *testing.T, a, b *harness.Node, f func(*harness.Node)) {
	t.Helper()
	var wg sync.WaitGroup
	for _, n := range []*harness.Node{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); f(n) }()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}
