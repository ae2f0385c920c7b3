package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/testimage"
)

// TestServiceLB: LoadBalancer Services on bare metal. The host, on the
// nodes' bridge, is a machine of the LAN. A Service gets the first address
// of --service-lb-pool; the host reaches it by that address (a node answers
// ARP for it); the announcing node loses its power and another node takes
// over (the takeover time is logged); with externalTrafficPolicy: Local the
// node that announces is the pod's, and the pod sees the host's address.
func TestServiceLB(t *testing.T) {
	c := harness.NewCluster(t)
	image := testimage.Build(t)
	const pool = "172.31.250.200-172.31.250.209"
	var a, w1, w2 *harness.Node
	c.Step("server a (pool "+pool+") and agents w1, w2", func() {
		a = startNode(t, c, image, "a", "--service-lb-pool", "default="+pool)
		a.WaitReady(5 * time.Minute)
		join := []string{"agent", "--server", "https://" + a.IP().String() + ":6443", "--token", agentToken(t, a)}
		w1 = startNode(t, c, image, "w1", join...)
		w2 = startNode(t, c, image, "w2", join...)
		waitNodeReady(c, a, w1, 5*time.Minute)
		waitNodeReady(c, a, w2, 5*time.Minute)
	})
	// The pod runs on a, which never announces: killing the announcer
	// (w1 or w2) leaves the pod running.
	c.Step("a LoadBalancer Service gets the pool's first address", func() {
		a.MustKubectl("label", "node", "a", "kedge.io/lb-announce=false")
		runWebOn(t, c, a, "web-a", "a")
		a.MustKubectl("expose", "pod", "web-a", "--name=web", "--type=LoadBalancer", "--port=80", "--target-port=8080")
		c.Eventually(time.Minute, "ingress 172.31.250.200", func() error {
			ip, err := a.Kubectl("get", "service", "web", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}")
			if ip != "172.31.250.200" {
				return fmt.Errorf("ingress %q, %v", ip, err)
			}
			return nil
		})
	})
	url := "http://172.31.250.200/"
	c.Step("the LAN reaches it by its pool address", func() {
		c.Eventually(time.Minute, "GET "+url, func() error { return get(url, "hello from web-a") })
	})
	announcer := announcing(t, "172.31.250.200", w1, w2)
	survivor := w1
	if announcer == w1 {
		survivor = w2
	}
	// kill -9 of kedge alone would leave the node's network and its
	// kube-proxy rules in place, still carrying the traffic: the node's
	// power goes instead.
	c.Step("the announcing node loses its power: the other takes over", func() {
		announcer.PowerOff()
		off := time.Now()
		c.Eventually(2*time.Minute, survivor.Name()+" announces", func() error {
			if !logsAnnouncing(survivor, "172.31.250.200") {
				return fmt.Errorf("%s does not announce 172.31.250.200 yet", survivor.Name())
			}
			return nil
		})
		took := time.Since(off)
		c.Eventually(2*time.Minute, "GET "+url+" through "+survivor.Name(), func() error { return get(url, "hello from web-a") })
		t.Logf("takeover: %s announces 172.31.250.200 %.1f s after %s lost its power; GET works after %.1f s",
			survivor.Name(), took.Seconds(), announcer.Name(), time.Since(off).Seconds())
	})
	c.Step("externalTrafficPolicy Local: the pod's node announces, the pod sees the client's address", func() {
		runWebOn(t, c, a, "web-local", survivor.Name())
		a.MustKubectl("expose", "pod", "web-local", "--name=web-local", "--type=LoadBalancer", "--port=80", "--target-port=8080",
			`--overrides={"spec":{"externalTrafficPolicy":"Local"}}`)
		var ip string
		c.Eventually(time.Minute, "web-local's ingress", func() error {
			var err error
			ip, err = a.Kubectl("get", "service", "web-local", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}")
			if !strings.HasPrefix(ip, "172.31.250.20") {
				return fmt.Errorf("ingress %q, %v", ip, err)
			}
			return nil
		})
		c.Eventually(time.Minute, "GET http://"+ip+"/client shows the host's address", func() error {
			return get("http://"+ip+"/client", harness.BridgeIP().String())
		})
		if !logsAnnouncing(survivor, ip) {
			t.Fatalf("%s, the pod's node, does not announce %s", survivor.Name(), ip)
		}
	})
}

// runWebOn runs the test image as pod name on node and waits until it runs.
func runWebOn(t *testing.T, c *harness.Cluster, server *harness.Node, name, node string) {
	t.Helper()
	overrides := fmt.Sprintf(`{"spec":{"nodeName":%q}}`, node)
	server.MustKubectl("run", name, "--image="+webImage, "--image-pull-policy=Never", "--port=8080", "--overrides="+overrides)
	c.Eventually(3*time.Minute, "pod "+name+" Running", func() error {
		s, err := server.Kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}")
		if s != "Running" {
			return fmt.Errorf("phase %q, %v", s, err)
		}
		return nil
	})
}

// get fetches url from the host (a machine on the nodes' segment) and
// wants the answer to start with want.
func get(url, want string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.HasPrefix(string(body), want) {
		return fmt.Errorf("answer %q, want %q", body, want)
	}
	return nil
}

// announcing returns the node among nodes whose log last says it
// announces ip; it fails the test if none does.
func announcing(t *testing.T, ip string, nodes ...*harness.Node) *harness.Node {
	t.Helper()
	for _, n := range nodes {
		if logsAnnouncing(n, ip) {
			return n
		}
	}
	t.Fatalf("no node of %d logs that it announces %s", len(nodes), ip)
	return nil
}

// logsAnnouncing reports whether n's log last says it announces ip (a
// later "no longer announcing" line takes it back).
func logsAnnouncing(n *harness.Node, ip string) bool {
	on := false
	for _, line := range strings.Split(n.LogSinceStart(), "\n") {
		if !strings.Contains(line, " ip="+ip+" ") && !strings.HasSuffix(line, " ip="+ip) {
			continue
		}
		switch {
		case strings.Contains(line, "msg=announcing "):
			on = true
		case strings.Contains(line, `msg="no longer announcing"`):
			on = false
		}
	}
	return on
}
