package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/testimage"
)

// TestHA: three servers (a; b and c join a) and an agent w. A Deployment
// spread over all four nodes; traffic across nodes, a Service and DNS from
// every node. A writer creates ConfigMaps through the agent's load balancer
// while the etcd leader's kedge is killed (-9): the failover time is
// measured, the killed server rejoins, and every acknowledged write is
// there. A non-leader server cut off from the network refuses writes (no
// split brain) while the others accept them, and heals when reconnected.
func TestHA(t *testing.T) {
	c := harness.NewCluster(t)
	image := testimage.Build(t)
	var a, b, cc, w *harness.Node
	c.Step("start server a", func() {
		a = startNode(t, c, image, "a")
		a.WaitReady(5 * time.Minute)
	})
	token := joinToken(t, a)
	aURL := "https://" + a.IP().String() + ":6443"
	c.Step("server b joins a, Ready", func() {
		b = startNode(t, c, image, "b", "--server", aURL, "--token", token)
		b.WaitReady(5 * time.Minute)
		waitNodeReady(c, a, b, 5*time.Minute)
	})
	c.Step("server c joins a, Ready; three voting members", func() {
		cc = startNode(t, c, image, "c", "--server", aURL, "--token", token)
		cc.WaitReady(5 * time.Minute)
		waitNodeReady(c, a, cc, 5*time.Minute)
		waitVoters(c, a, "a voter,b voter,c voter", 2*time.Minute)
	})
	c.Step("agent w joins a, Ready; four nodes Ready", func() {
		w = startNode(t, c, image, "w", "agent", "--server", aURL, "--token", token)
		waitNodeReady(c, a, w, 5*time.Minute)
		if nodes := a.MustKubectl("get", "nodes", "-o", "name"); nodes != "node/a\nnode/b\nnode/c\nnode/w" {
			t.Fatalf("nodes: %q", nodes)
		}
	})
	servers := []*harness.Node{a, b, cc}
	all := []*harness.Node{a, b, cc, w}
	podOn := map[string]string{} // node → pod
	podIP := map[string]string{} // node → pod IP
	c.Step("a Deployment of 4 replicas spread over the 4 nodes", func() {
		manifest := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - {name: web, image: %s, imagePullPolicy: Never, ports: [{containerPort: 8080}]}
`, webImage)
		if err := os.WriteFile(filepath.Join(a.DataDir(), "web.yaml"), []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		a.MustKubectl("apply", "-f", "/var/lib/kedge/web.yaml")
		c.Eventually(4*time.Minute, "a Running web pod on each node", func() error {
			out, err := a.Kubectl("get", "pods", "-l", "app=web", "-o", `jsonpath={range .items[*]}{.spec.nodeName} {.metadata.name} {.status.phase} {.status.podIP}{"\n"}{end}`)
			if err != nil {
				return err
			}
			for k := range podOn {
				delete(podOn, k)
			}
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				if len(f) == 4 && f[2] == "Running" {
					podOn[f[0]], podIP[f[0]] = f[1], f[3]
				}
			}
			if len(podOn) != 4 {
				return fmt.Errorf("running pods by node: %v (%q)", podOn, out)
			}
			return nil
		})
	})
	get := func(from, url, wantPrefix string) {
		t.Helper()
		c.Eventually(time.Minute, podOn[from]+" → "+url, func() error {
			out, err := a.Kubectl("exec", podOn[from], "--", "/webapp", "get", url)
			if err != nil || !strings.HasPrefix(out, wantPrefix) {
				return fmt.Errorf("%q, %v", out, err)
			}
			return nil
		})
	}
	c.Step("pod-to-pod across nodes; a Service from the agent's pod; DNS from every node", func() {
		for i, n := range all {
			to := all[(i+1)%len(all)].Name()
			get(n.Name(), "http://"+podIP[to]+":8080/", "hello from "+podOn[to])
		}
		a.MustKubectl("expose", "deployment", "web", "--name=web", "--port=80", "--target-port=8080")
		get("w", "http://web.default.svc.cluster.local/", "hello from web-")
		for _, n := range all {
			get(n.Name(), "http://web.default.svc.cluster.local/", "hello from web-")
		}
	})

	// The writer: kubectl inside w with a's admin kubeconfig pointed at the
	// agent's load balancer.
	kc, err := a.Exec("cat", "/etc/kedge/kedge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kc = regexp.MustCompile(`server: \S+`).ReplaceAllString(kc, "server: https://127.0.0.1:6444")
	if err := os.WriteFile(filepath.Join(w.DataDir(), "admin-lb.yaml"), []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	writeVia := func(n *harness.Node, kubeconfig, name string) error {
		_, err := n.Exec(c.Bin(), "kubectl", "--kubeconfig", kubeconfig, "--request-timeout=5s", "create", "configmap", name, "--from-literal=n="+name)
		return err
	}
	// writeRetried is a condition for c.Eventually that creates ConfigMap
	// name through n. A create whose client timed out may still commit: a
	// later attempt then finds the ConfigMap there, and that earlier write
	// through n is the one that succeeded.
	writeRetried := func(n *harness.Node, name string) func() error {
		failed := false
		return func() error {
			err := writeVia(n, "/etc/kedge/kedge.yaml", name)
			if err != nil && failed && strings.Contains(err.Error(), fmt.Sprintf("%q already exists", name)) {
				t.Logf("%s: an earlier, timed-out create through %s committed", name, n.Name())
				return nil
			}
			failed = err != nil
			return err
		}
	}
	type attempt struct {
		name string
		at   time.Time
		ok   bool
		err  error
	}
	var (
		mu       sync.Mutex
		attempts []attempt
		stop     = make(chan struct{})
		done     = make(chan struct{})
	)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("cm-%d", i)
			at := time.Now()
			err := writeVia(w, "/var/lib/kedge/admin-lb.yaml", name)
			mu.Lock()
			attempts = append(attempts, attempt{name, at, err == nil, err})
			mu.Unlock()
			if err != nil {
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	stopWriter := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}
	defer stopWriter()
	okSince := func(t0 time.Time) (ok int, firstOK time.Time, failed int) {
		mu.Lock()
		defer mu.Unlock()
		for _, at := range attempts {
			if at.at.Before(t0) {
				continue
			}
			if at.ok {
				ok++
				if firstOK.IsZero() {
					firstOK = at.at
				}
			} else if firstOK.IsZero() {
				failed++
			}
		}
		return
	}

	var leader *harness.Node
	c.Step("writes through the agent's load balancer succeed", func() {
		t0 := time.Now()
		c.Eventually(time.Minute, "5 writes through w", func() error {
			if ok, _, _ := okSince(t0); ok < 5 {
				return fmt.Errorf("%d acknowledged writes", ok)
			}
			return nil
		})
		c.Eventually(time.Minute, "the etcd leader", func() error {
			leader, err = etcdLeader(servers)
			return err
		})
		t.Logf("etcd leader: %s", leader.Name())
	})
	var killedAt time.Time
	c.Step("kill -9 the etcd leader; writes through the agent succeed again", func() {
		killedAt = time.Now()
		leader.Kill()
		defer func() {
			mu.Lock()
			defer mu.Unlock()
			shown := 0
			for _, at := range attempts {
				if !at.at.Before(killedAt) && !at.ok && shown < 15 {
					shown++
					t.Logf("  failed %s at +%s: %v", at.name, at.at.Sub(killedAt).Round(time.Millisecond), at.err)
				}
			}
		}()
		// The etcd side alone: a write through a surviving server's own
		// apiserver.
		survivor := servers[0]
		if survivor == leader {
			survivor = servers[1]
		}
		for i := 0; ; i++ {
			if err := writeVia(survivor, "/etc/kedge/kedge.yaml", fmt.Sprintf("survivor-%d", i)); err == nil {
				t.Logf("a write through surviving server %s's own apiserver succeeded %s after the kill",
					survivor.Name(), time.Since(killedAt).Round(time.Millisecond))
				break
			} else if time.Since(killedAt) > 90*time.Second {
				t.Errorf("no write through %s for 90s after the kill: %v", survivor.Name(), err)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		for {
			if ok, _, _ := okSince(killedAt); ok > 0 {
				break
			}
			if time.Since(killedAt) > 90*time.Second {
				log, _ := os.ReadFile(w.LogFile())
				var lb []string
				for _, line := range strings.Split(string(log), "\n") {
					if strings.Contains(line, "msg=joined") || strings.Contains(line, "component=loadbalancer") {
						lb = append(lb, line)
					}
				}
				_, _, failed := okSince(killedAt)
				t.Errorf("no write through w's load balancer for 90s after killing %s (%d failed); w's joined/load balancer log:\n%s",
					leader.Name(), failed, strings.Join(lb, "\n"))
				return
			}
			time.Sleep(time.Second)
		}
		_, firstOK, failed := okSince(killedAt)
		// The first write attempted after the kill that succeeded: its
		// acknowledgement is at most a request later.
		t.Logf("FAILOVER: leader %s killed; first successful write began %s after the kill; %d writes failed meanwhile",
			leader.Name(), firstOK.Sub(killedAt).Round(time.Millisecond), failed)
	})
	var others []*harness.Node
	for _, n := range servers {
		if n != leader {
			others = append(others, n)
		}
	}
	c.Step("restart the killed server: it rejoins, 3 voting members, all Ready", func() {
		leader.Start()
		leader.WaitReady(5 * time.Minute)
		waitNodeReady(c, others[0], leader, 5*time.Minute)
		waitVoters(c, others[0], "a voter,b voter,c voter", 2*time.Minute)
		c.Eventually(2*time.Minute, "3 healthy members", func() error { return etcdHealthy(servers) })
		for _, n := range all {
			waitNodeReady(c, others[0], n, 2*time.Minute)
		}
	})
	c.Step("stop the writer; every acknowledged ConfigMap is there", func() {
		stopWriter()
		mu.Lock()
		var acked []string
		failed := 0
		for _, at := range attempts {
			if at.ok {
				acked = append(acked, at.name)
			} else {
				failed++
			}
		}
		mu.Unlock()
		out, err := others[0].Kubectl("get", "configmaps", "-o", `jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}`)
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, s := range strings.Split(out, "\n") {
			have[s] = true
		}
		var missing []string
		for _, name := range acked {
			if !have[name] {
				missing = append(missing, name)
			}
		}
		t.Logf("writer: %d acknowledged, %d failed, %d acknowledged missing", len(acked), failed, len(missing))
		if len(missing) > 0 {
			t.Fatalf("acknowledged ConfigMaps missing (read via %s): %v", others[0].Name(), missing)
		}
	})

	c.Step("cut off a non-leader server: writes through it fail, through the others succeed; reconnect heals", func() {
		var l *harness.Node
		c.Eventually(time.Minute, "the etcd leader", func() error {
			l, err = etcdLeader(servers)
			return err
		})
		var x *harness.Node
		var rest []*harness.Node
		for _, n := range servers {
			if n != l && x == nil {
				x = n
			} else {
				rest = append(rest, n)
			}
		}
		t.Logf("leader %s; cutting off %s", l.Name(), x.Name())
		x.CutOff()
		cutAt := time.Now()
		// Give x's etcd time to notice (election timeout) before asserting.
		time.Sleep(5 * time.Second)
		for i := 0; i < 3; i++ {
			name := fmt.Sprintf("cut-%s-%d", x.Name(), i)
			if err := writeVia(x, "/etc/kedge/kedge.yaml", name); err == nil {
				t.Errorf("a write through cut-off %s succeeded (%s): split brain", x.Name(), name)
			}
		}
		for _, n := range rest {
			name := "via-" + n.Name()
			c.Eventually(time.Minute, "a write through "+n.Name(), writeRetried(n, name))
		}
		t.Logf("%s cut off for %s", x.Name(), time.Since(cutAt).Round(time.Second))
		x.Reconnect()
		c.Eventually(2*time.Minute, "a write through "+x.Name()+" after reconnecting", writeRetried(x, "healed-"+x.Name()))
		c.Eventually(2*time.Minute, "3 healthy members", func() error { return etcdHealthy(servers) })
		for _, n := range servers {
			for _, name := range []string{"via-" + rest[0].Name(), "via-" + rest[1].Name(), "healed-" + x.Name()} {
				if _, err := n.Kubectl("get", "configmap", name); err != nil {
					t.Errorf("%s does not read %s: %v", n.Name(), name, err)
				}
			}
			for i := 0; i < 3; i++ {
				if _, err := n.Kubectl("get", "configmap", fmt.Sprintf("cut-%s-%d", x.Name(), i)); err == nil {
					t.Errorf("%s reads cut-%s-%d, written while cut off", n.Name(), x.Name(), i)
				}
			}
		}
	})
	t.Log("\n" + c.Summary())
}

// waitVoters waits until n's etcd member list is want ("a voter,b voter").
func waitVoters(c *harness.Cluster, n *harness.Node, want string, timeout time.Duration) {
	c.Eventually(timeout, want, func() error {
		got, err := etcdMembers(n)
		if err != nil {
			return err
		}
		if strings.Join(got, ",") != want {
			return fmt.Errorf("members %v, want %s", got, want)
		}
		return nil
	})
}

type etcdStatus struct {
	Header struct {
		MemberID string `json:"member_id"`
	} `json:"header"`
	Leader string   `json:"leader"`
	Errors []string `json:"errors"`
}

// etcdStatusOf is n's etcd's /v3/maintenance/status.
func etcdStatusOf(n *harness.Node) (etcdStatus, error) {
	tls := "/var/lib/kedge/server/tls/etcd/"
	var st etcdStatus
	out, err := n.Exec("curl", "-sS", "--fail", "-m", "5", "--cacert", tls+"server-ca.crt", "--cert", tls+"client.crt", "--key", tls+"client.key",
		"-X", "POST", "-d", "{}", "https://127.0.0.1:2379/v3/maintenance/status")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("status %q: %w", out, err)
	}
	return st, nil
}

// etcdLeader is the server whose etcd is the leader, all servers agreeing.
func etcdLeader(servers []*harness.Node) (*harness.Node, error) {
	var leader *harness.Node
	leaderID := ""
	for _, n := range servers {
		st, err := etcdStatusOf(n)
		if err != nil {
			return nil, err
		}
		if st.Leader == "" || st.Leader == "0" || (leaderID != "" && st.Leader != leaderID) {
			return nil, fmt.Errorf("%s: leader %q (others say %q)", n.Name(), st.Leader, leaderID)
		}
		leaderID = st.Leader
		if st.Header.MemberID == st.Leader {
			leader = n
		}
	}
	if leader == nil {
		return nil, fmt.Errorf("no server is the leader %s", leaderID)
	}
	return leader, nil
}

// etcdHealthy: every server answers its status, no errors, one leader.
func etcdHealthy(servers []*harness.Node) error {
	if _, err := etcdLeader(servers); err != nil {
		return err
	}
	for _, n := range servers {
		st, _ := etcdStatusOf(n)
		if len(st.Errors) > 0 {
			return fmt.Errorf("%s: %v", n.Name(), st.Errors)
		}
	}
	return nil
}
