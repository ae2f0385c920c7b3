package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/testimage"
)

// topNode matches a line of `kubectl top nodes --no-headers` with numbers.
var topNode = regexp.MustCompile(`^(\S+)\s+[1-9]\d*m\s+\d+%\s+[1-9]\d*Mi\s+\d+%$`)

// TestMetricsAPIServers: with two servers and an agent, the metrics-server
// Service's EndpointSlice lists both servers (as the kubernetes Service
// does), and `kubectl top nodes` shows every node, from each server's
// metrics-server (the aggregator picks an endpoint per request).
func TestMetricsAPIServers(t *testing.T) {
	c := harness.NewCluster(t)
	image := testimage.Build(t)
	var a, b, w *harness.Node
	c.Step("server a, server b joins, agent w joins; all Ready", func() {
		a = startNode(t, c, image, "a")
		a.WaitReady(5 * time.Minute)
		aURL := "https://" + a.IP().String() + ":6443"
		b = startNode(t, c, image, "b", "--server", aURL, "--token", joinToken(t, a))
		w = startNode(t, c, image, "w", "agent", "--server", aURL, "--token", agentToken(t, a))
		b.WaitReady(5 * time.Minute)
		waitNodeReady(c, a, b, 5*time.Minute)
		waitNodeReady(c, a, w, 5*time.Minute)
	})
	c.Step("the metrics-server EndpointSlice lists a and b at 10262", func() {
		want := []string{a.IP().String(), b.IP().String()}
		slices.Sort(want)
		c.Eventually(time.Minute, "endpoints "+strings.Join(want, ","), func() error {
			out, err := a.Kubectl("-n", "kube-system", "get", "endpointslice", "metrics-server", "-o", "jsonpath={.endpoints[*].addresses[0]} {.ports[0].port}")
			if out != strings.Join(want, " ")+" 10262" {
				return fmt.Errorf("slice %q, %v", out, err)
			}
			return nil
		})
	})
	c.Step("kubectl top nodes shows a, b and w, ten times in a row", func() {
		begin := time.Now()
		c.Eventually(3*time.Minute, "top nodes", func() error {
			for range 10 {
				out, err := a.Kubectl("top", "nodes", "--no-headers")
				if err != nil {
					return err
				}
				var names []string
				for _, l := range strings.Split(out, "\n") {
					if m := topNode.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
						names = append(names, m[1])
					}
				}
				if strings.Join(names, ",") != "a,b,w" {
					return fmt.Errorf("top nodes:\n%s", out)
				}
			}
			return nil
		})
		t.Logf("kubectl top nodes answered 10 times in a row %s after w was Ready:\n%s", time.Since(begin).Round(time.Second), a.MustKubectl("top", "nodes"))
	})
}
