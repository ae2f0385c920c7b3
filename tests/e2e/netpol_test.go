package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/testimage"
)

// npPod is a pod of the NetworkPolicy test: the web image (a server on
// 8080 and a client) in namespace ns on node, with labels.
type npPod struct{ ns, name, node, labels string }

// TestNetworkPolicy: NetworkPolicies enforced on the server's node and on
// an agent. Namespace np holds web-a, web-w (app=web) and client-a,
// client-w (role=client), other-a (role=other); np-friend
// (team=friend) holds friend-w, np-stranger holds stranger-a (the suffix is
// the node). A default-deny blocks pod-to-pod on one node and across nodes;
// an allow rule by pod label, then one by namespace label, lets exactly
// those pods through; an egress policy limits the clients, and DNS works
// again with the allow-DNS rule.
func TestNetworkPolicy(t *testing.T) {
	c := harness.NewCluster(t)
	image := testimage.Build(t)
	var a, w *harness.Node
	c.Step("server a and agent w", func() {
		a = startNode(t, c, image, "a")
		a.WaitReady(5 * time.Minute)
		w = startNode(t, c, image, "w", "agent", "--server", "https://"+a.IP().String()+":6443", "--token", agentToken(t, a))
		waitNodeReady(c, a, w, 5*time.Minute)
		for _, n := range []*harness.Node{a, w} {
			if !strings.Contains(n.LogSinceStart(), `msg="network policies enforced"`) {
				t.Fatalf("%s does not log that it enforces network policies", n.Name())
			}
		}
	})
	pods := []npPod{
		{"np", "web-a", "a", "app=web"}, {"np", "web-w", "w", "app=web"},
		{"np", "client-a", "a", "role=client"}, {"np", "client-w", "w", "role=client"},
		{"np", "other-a", "a", "role=other"},
		{"np-friend", "friend-w", "w", "team=member"}, {"np-stranger", "stranger-a", "a", "team=member"},
	}
	ip, ns := map[string]string{}, map[string]string{}
	// runPods starts the pods and waits until each runs, with its IP.
	runPods := func(pods ...npPod) {
		for _, p := range pods {
			ns[p.name] = p.ns
			overrides := fmt.Sprintf(`{"spec":{"nodeName":%q}}`, p.node)
			a.MustKubectl("run", "-n", p.ns, p.name, "--image="+webImage, "--image-pull-policy=Never", "--port=8080",
				"--labels="+p.labels, "--overrides="+overrides)
		}
		for _, p := range pods {
			c.Eventually(3*time.Minute, "pod "+p.name+" Running", func() error {
				s, err := a.Kubectl("get", "pod", "-n", p.ns, p.name, "-o", "jsonpath={.status.phase} {.status.podIP}")
				if f := strings.Fields(s); len(f) == 2 && f[0] == "Running" {
					ip[p.name] = f[1]
					return nil
				}
				return fmt.Errorf("pod %q, %v", s, err)
			})
		}
	}
	c.Step("namespaces and 7 pods on both nodes", func() {
		for _, ns := range []string{"np", "np-friend", "np-stranger"} {
			a.MustKubectl("create", "namespace", ns)
		}
		a.MustKubectl("label", "namespace", "np-friend", "team=friend")
		runPods(pods...)
		a.MustKubectl("expose", "pod", "-n", "np", "web-a", "--name=web", "--port=80", "--target-port=8080")
	})
	// reach wants from's GET of to's pod IP answered by to; blocked wants
	// it refused (kube-router rejects), also a second time.
	reach := func(from, to string) {
		t.Helper()
		c.Eventually(time.Minute, from+" → "+to, func() error { return npGet(a, ns[from], from, "http://"+ip[to]+":8080/", to) })
	}
	blocked := func(from, to string) {
		t.Helper()
		for range 2 {
			c.Eventually(time.Minute, from+" ↛ "+to, func() error {
				if err := npGet(a, ns[from], from, "http://"+ip[to]+":8080/", to); err == nil {
					return fmt.Errorf("%s reaches %s", from, to)
				}
				return nil
			})
			time.Sleep(2 * time.Second)
		}
	}
	c.Step("no policy: every pod reaches every pod", func() {
		reach("client-a", "web-a")
		reach("client-w", "web-a")
		reach("stranger-a", "web-w")
		reach("friend-w", "client-a")
	})
	c.Step("default-deny ingress in np: blocked on one node and across nodes", func() {
		npApply(t, a, npPolicy("np", "deny", "{}", "[Ingress]", "", ""))
		blocked("client-a", "web-a")    // same node (server)
		blocked("other-a", "client-a")  // same node, any pod of np
		blocked("client-w", "web-a")    // agent → server
		blocked("client-a", "web-w")    // server → agent
		reach("friend-w", "stranger-a") // namespaces without a policy: unchanged
	})
	// The pods above started while the cluster had no policy (their events
	// start no sync then, netpol.whilePolicies): the policy's own sync
	// isolated them. One started now is isolated through its own events,
	// well before the periodic sync (5 min).
	c.Step("a pod started while the deny is in place is isolated too", func() {
		runPods(npPod{"np", "late-w", "w", "app=late"})
		blocked("client-a", "late-w")
		blocked("client-w", "late-w")
	})
	c.Step("allow by pod label: role=client reaches app=web, nothing else does", func() {
		npApply(t, a, npPolicy("np", "from-clients", "{matchLabels: {app: web}}", "[Ingress]",
			"ingress: [{from: [{podSelector: {matchLabels: {role: client}}}]}]", ""))
		reach("client-a", "web-a")
		reach("client-w", "web-a")
		reach("client-a", "web-w")
		blocked("other-a", "web-a")
		blocked("friend-w", "web-w") // a role-less pod of another namespace, same node
		blocked("web-a", "client-w") // the clients are still denied
	})
	c.Step("allow by namespace label: team=friend's pods reach app=web, np-stranger's do not", func() {
		npApply(t, a, npPolicy("np", "from-friends", "{matchLabels: {app: web}}", "[Ingress]",
			"ingress: [{from: [{namespaceSelector: {matchLabels: {team: friend}}}]}]", ""))
		reach("friend-w", "web-a")
		reach("friend-w", "web-w")
		blocked("stranger-a", "web-a")
		blocked("stranger-a", "web-w")
		blocked("other-a", "web-w")
	})
	resolve := func(from string) error {
		out, err := a.Kubectl("exec", "-n", ns[from], from, "--", "/webapp", "resolve", "web.np.svc.cluster.local")
		if err != nil {
			return fmt.Errorf("resolve from %s: %q, %v", from, out, err)
		}
		return nil
	}
	c.Step("egress: the clients reach only app=web of np; without the DNS rule they cannot resolve", func() {
		npApply(t, a, npPolicy("np", "clients-out", "{matchLabels: {role: client}}", "[Egress]", "",
			"egress: [{to: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 8080}]}]"))
		reach("client-a", "web-a")
		reach("client-w", "web-a")
		blocked("client-a", "friend-w")
		blocked("client-w", "friend-w")
		blocked("client-a", "other-a")
		c.Eventually(time.Minute, "client-a cannot resolve", func() error {
			if resolve("client-a") == nil {
				return fmt.Errorf("client-a resolves names despite its egress policy")
			}
			return nil
		})
	})
	c.Step("egress with the allow-DNS rule: the clients resolve names and reach web by its Service name", func() {
		npApply(t, a, npPolicy("np", "clients-dns", "{matchLabels: {role: client}}", "[Egress]", "",
			"egress: [{ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]}]"))
		for _, from := range []string{"client-a", "client-w"} {
			c.Eventually(time.Minute, from+" resolves web.np.svc.cluster.local", func() error { return resolve(from) })
			c.Eventually(time.Minute, from+" → http://web.np.svc.cluster.local/", func() error {
				return npGet(a, "np", from, "http://web.np.svc.cluster.local/", "web-a")
			})
		}
		blocked("client-w", "friend-w") // still only DNS and app=web
	})
	c.Step("deleting the policies opens np again", func() {
		a.MustKubectl("delete", "networkpolicy", "-n", "np", "--all")
		reach("other-a", "client-a")
		reach("client-a", "friend-w")
		reach("stranger-a", "web-w")
	})
	c.Step("--disable network-policy: the nodes remove kube-router's rules, a deny policy no longer blocks", func() {
		npApply(t, a, npPolicy("np", "deny", "{}", "[Ingress]", "", ""))
		blocked("client-a", "web-a")
		conf := filepath.Join(a.Dir(), "etc-kedge", "config.yaml")
		if err := os.WriteFile(conf, []byte("disable:\n  - network-policy\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		a.Stop()
		a.Start()
		a.WaitReady(5 * time.Minute)
		w.Stop()
		w.Start()
		waitNodeReady(c, a, w, 5*time.Minute)
		for _, n := range []*harness.Node{a, w} {
			// The agent starts from its last join and restarts once its
			// background join brings the new --disable.
			c.Eventually(2*time.Minute, n.Name()+" logs that it removed the rules", func() error {
				if !strings.Contains(n.LogSinceStart(), "network policy rules removed") {
					return fmt.Errorf("%s does not log that it removed the rules", n.Name())
				}
				return nil
			})
			if out, err := n.Exec("iptables", "-S", "KUBE-ROUTER-FORWARD"); err == nil {
				t.Fatalf("%s still has KUBE-ROUTER-FORWARD: %s", n.Name(), out)
			}
		}
		reach("client-a", "web-a")
		reach("client-w", "web-a")
		if out, err := a.Kubectl("get", "clusterrole", "kedge:network-policy"); err == nil {
			t.Fatalf("ClusterRole kedge:network-policy still there: %s", out)
		}
	})
	t.Log("\n" + c.Summary())
}

// TestNetworkPolicyIdleRSS measures what NetworkPolicy enforcement adds to
// the idle RSS of a server and an agent: the same two-node cluster without
// pods, once as is and once with --disable network-policy, sampled after
// the same settling time. The difference must stay within issue 12's
// budget for all four built-in batteries (25 MiB).
func TestNetworkPolicyIdleRSS(t *testing.T) {
	const settle, samples = 60 * time.Second, 5
	image := testimage.Build(t)
	rss := map[string][2]int{} // "server"/"agent" → [with, without] KiB
	for i, extra := range [][]string{nil, {"--disable", "network-policy"}} {
		t.Run(fmt.Sprintf("disable=%v", extra != nil), func(t *testing.T) {
			c := harness.NewCluster(t)
			a := startNode(t, c, image, "a", append([]string{"server"}, extra...)...)
			a.WaitReady(5 * time.Minute)
			w := startNode(t, c, image, "w", "agent", "--server", "https://"+a.IP().String()+":6443", "--token", agentToken(t, a))
			waitNodeReady(c, a, w, 5*time.Minute)
			enforced := strings.Contains(w.LogSinceStart(), `msg="network policies enforced"`)
			if enforced != (extra == nil) {
				t.Fatalf("agent enforces policies: %v, with server flags %v", enforced, extra)
			}
			time.Sleep(settle)
			for role, n := range map[string]*harness.Node{"server": a, "agent": w} {
				v := rss[role]
				v[i] = medianRSS(t, n, samples)
				rss[role] = v
			}
		})
	}
	for _, role := range []string{"server", "agent"} {
		v := rss[role]
		added := float64(v[0]-v[1]) / 1024
		t.Logf("%s idle RSS: %.1f MiB with network-policy, %.1f MiB with --disable network-policy: %+.1f MiB",
			role, float64(v[0])/1024, float64(v[1])/1024, added)
		if v[0] == 0 || v[1] == 0 || added > 25 {
			t.Errorf("%s: network-policy adds %.1f MiB (samples %v), over the 25 MiB budget", role, added, v)
		}
	}
}

// medianRSS samples the RSS (KiB) of the kedge process of node n every 5 s
// and returns the median.
func medianRSS(t *testing.T, n *harness.Node, samples int) int {
	t.Helper()
	var got []int
	for i := range samples {
		if i > 0 {
			time.Sleep(5 * time.Second)
		}
		out, err := n.Exec("ps", "-o", "rss=", "-C", "kedge")
		if err != nil {
			t.Fatal(err)
		}
		kib, err := strconv.Atoi(strings.Fields(out)[0])
		if err != nil {
			t.Fatalf("ps in %s: %q: %v", n.Name(), out, err)
		}
		got = append(got, kib)
	}
	slices.Sort(got)
	return got[len(got)/2]
}

// npGet runs `webapp get url` in pod from of namespace ns and wants the
// answer of pod to.
func npGet(server *harness.Node, ns, from, url, to string) error {
	out, err := server.Kubectl("exec", "-n", ns, from, "--", "/webapp", "get", url)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(out, "hello from "+to) {
		return fmt.Errorf("answer %q, want hello from %s", out, to)
	}
	return nil
}

// npPolicy is a NetworkPolicy named name in ns (YAML, flow style).
func npPolicy(ns, name, podSelector, types, ingress, egress string) string {
	spec := "  podSelector: " + podSelector + "\n  policyTypes: " + types + "\n"
	if ingress != "" {
		spec += "  " + ingress + "\n"
	}
	if egress != "" {
		spec += "  " + egress + "\n"
	}
	return fmt.Sprintf("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n%s", name, ns, spec)
}

// npApply applies a manifest on server (through a file of its node).
func npApply(t *testing.T, server *harness.Node, manifest string) {
	t.Helper()
	f := filepath.Join(server.DataDir(), "np-"+fmt.Sprint(time.Now().UnixNano())+".yaml")
	if err := os.WriteFile(f, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	server.MustKubectl("apply", "-f", "/var/lib/kedge/"+filepath.Base(f))
}
