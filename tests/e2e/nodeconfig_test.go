package e2e

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/testimage"
)

// TestNodeConfig: --node-label and --node-taint from the flags and from
// config.yaml are on the Nodes at registration and follow a changed
// config.yaml on restart, on a server (admin credentials) and on an agent
// (through the supervisor), while labels and taints set with kubectl stay.
// --disable coredns removes the kube-dns Service and the agent's CoreDNS;
// a user manifest with a .skip file beside it is not applied.
func TestNodeConfig(t *testing.T) {
	c := harness.NewCluster(t)
	image := testimage.Build(t)
	var a, w *harness.Node
	c.Step("server a with --node-label and --node-taint", func() {
		a = startNode(t, c, image, "a", "--node-label", "site=s", "--node-taint", "role=server:PreferNoSchedule")
		a.WaitReady(5 * time.Minute)
	})
	c.Step("agent w with node-label and node-taint in config.yaml", func() {
		w = c.AddNode("w", "agent", "--server", "https://"+a.IP().String()+":6443", "--token", agentToken(t, a))
		writeNodeFile(t, w, "/etc/kedge/config.yaml", "node-label:\n  - site=w\n  - node-role.kubernetes.io/worker=true\nnode-taint: [gpu=yes:NoSchedule]\nnode-external-ip: 203.0.113.7\n")
		w.Start()
		waitNodeReady(c, a, w, 5*time.Minute)
	})
	c.Step("labels and taints on both Nodes", func() {
		c.Eventually(time.Minute, "a's labels and taints", func() error {
			return nodeHas(a, "a", map[string]string{"site": "s", "node-role.kubernetes.io/control-plane": "true"}, nil, []string{"role=server:PreferNoSchedule"}, nil)
		})
		c.Eventually(time.Minute, "w's labels and taints", func() error {
			return nodeHas(a, "w", map[string]string{"site": "w", "node-role.kubernetes.io/worker": "true"}, nil, []string{"gpu=yes:NoSchedule"},
				[]string{"node.cloudprovider.kubernetes.io/uninitialized=true:NoSchedule"})
		})
		c.Eventually(time.Minute, "w's ExternalIP from --node-external-ip", func() error {
			return nodeAddresses(a, "w", "InternalIP="+w.IP().String()+" ExternalIP=203.0.113.7 Hostname=w")
		})
	})
	c.Step("an administrator's label and taint on w; config.yaml changes; w restarts", func() {
		a.MustKubectl("label", "node", "w", "admin=x")
		a.MustKubectl("taint", "node", "w", "admin=x:PreferNoSchedule")
		writeNodeFile(t, w, "/etc/kedge/config.yaml", "node-label: site=w2\nnode-taint: edge:NoSchedule\n")
		w.Restart()
		waitNodeReady(c, a, w, 5*time.Minute)
		c.Eventually(time.Minute, "w follows its config.yaml, the administrator's label and taint stay", func() error {
			return nodeHas(a, "w", map[string]string{"site": "w2", "admin": "x"}, []string{"node-role.kubernetes.io/worker"},
				[]string{"edge:NoSchedule", "admin=x:PreferNoSchedule"}, []string{"gpu=yes:NoSchedule"})
		})
		c.Eventually(time.Minute, "w's ExternalIP gone with the flag", func() error {
			return nodeAddresses(a, "w", "InternalIP="+w.IP().String()+" Hostname=w")
		})
	})
	c.Step("a user manifest applies; one with a .skip file does not", func() {
		cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: default\ndata:\n  k: v\n"
		writeNodeFile(t, a, "/var/lib/kedge/server/manifests/a-skipped.yaml.skip", "")
		writeNodeFile(t, a, "/var/lib/kedge/server/manifests/a-skipped.yaml", fmt.Sprintf(cm, "skipped"))
		writeNodeFile(t, a, "/var/lib/kedge/server/manifests/b-applied.yaml", fmt.Sprintf(cm, "applied"))
		c.Eventually(time.Minute, "ConfigMap applied", func() error {
			_, err := a.Kubectl("get", "configmap", "applied")
			return err
		})
		// Files are read in name order, every 10 s: a-skipped.yaml was seen first.
		if out, err := a.Kubectl("get", "configmap", "skipped"); err == nil {
			t.Fatalf("a-skipped.yaml was applied despite a-skipped.yaml.skip: %s", out)
		}
	})
	dns := net.JoinHostPort(w.IP().String(), "53")
	c.Step("--disable coredns: the kube-dns Service and the agent's CoreDNS go", func() {
		if err := w.DialTCP(dns, 2*time.Second); err != nil {
			t.Fatalf("w's CoreDNS does not answer on %s before --disable: %v", dns, err)
		}
		writeNodeFile(t, a, "/etc/kedge/config.yaml", "disable: coredns\n")
		a.Restart()
		a.WaitReady(5 * time.Minute)
		c.Eventually(time.Minute, "kube-dns Service deleted", func() error {
			if out, err := a.Kubectl("get", "service", "-n", "kube-system", "kube-dns"); err == nil {
				return fmt.Errorf("still there: %s", out)
			}
			return nil
		})
		w.Restart()
		waitNodeReady(c, a, w, 5*time.Minute)
		if err := w.DialTCP(dns, 2*time.Second); err == nil {
			t.Fatalf("w's CoreDNS still answers on %s after --disable coredns", dns)
		}
	})
}

// nodeAddresses checks a Node's status.addresses, as "Type=address" words.
func nodeAddresses(server *harness.Node, node, want string) error {
	out, err := server.Kubectl("get", "node", node, "-o", `go-template={{range .status.addresses}}{{.type}}={{.address}} {{end}}`)
	if got := strings.TrimSpace(out); err != nil || got != want {
		return fmt.Errorf("node %s: addresses %q, want %q (%v)", node, got, want, err)
	}
	return nil
}

// writeNodeFile writes content to path inside node n.
func writeNodeFile(t *testing.T, n *harness.Node, path, content string) {
	t.Helper()
	script := fmt.Sprintf("mkdir -p \"$(dirname %[1]q)\" && cat > %[1]q <<'KEDGE_EOF'\n%[2]sKEDGE_EOF\n", path, content)
	if out, err := n.Exec("sh", "-c", script); err != nil {
		t.Fatalf("write %s in %s: %v: %s", path, n.Name(), err, out)
	}
}

// nodeHas checks node's labels (present with the value / absent) and taints
// (as key[=value]:Effect, present / absent), as server sees them.
func nodeHas(server *harness.Node, node string, labels map[string]string, noLabels, taints, noTaints []string) error {
	out, err := server.Kubectl("get", "node", node, "-o", `go-template={{range $k, $v := .metadata.labels}}L {{$k}}={{$v}}{{"\n"}}{{end}}{{range .spec.taints}}T {{.key}}{{if .value}}={{.value}}{{end}}:{{.effect}}{{"\n"}}{{end}}`)
	if err != nil {
		return err
	}
	var gotLabels, gotTaints []string
	for _, line := range strings.Split(out, "\n") {
		if l, ok := strings.CutPrefix(line, "L "); ok {
			gotLabels = append(gotLabels, l)
		} else if tt, ok := strings.CutPrefix(line, "T "); ok {
			gotTaints = append(gotTaints, tt)
		}
	}
	for k, v := range labels {
		if !slices.Contains(gotLabels, k+"="+v) {
			return fmt.Errorf("node %s: no label %s=%s in %v", node, k, v, gotLabels)
		}
	}
	for _, k := range noLabels {
		if slices.ContainsFunc(gotLabels, func(l string) bool { return strings.HasPrefix(l, k+"=") }) {
			return fmt.Errorf("node %s: label %s still there: %v", node, k, gotLabels)
		}
	}
	for _, taint := range taints {
		if !slices.Contains(gotTaints, taint) {
			return fmt.Errorf("node %s: no taint %s in %v", node, taint, gotTaints)
		}
	}
	for _, taint := range noTaints {
		if slices.Contains(gotTaints, taint) {
			return fmt.Errorf("node %s: taint %s still there: %v", node, taint, gotTaints)
		}
	}
	return nil
}
