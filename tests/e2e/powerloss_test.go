package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/testimage"
)

// TestPowerLoss: a site of 3 servers (a, b, c) and 2 agents (w1 joins a,
// w2 joins b) formed with every node started at once in a random order,
// with a shared secret (the CA does not exist yet, so nothing can be
// pinned). Then, cycle after cycle, a writer creates ConfigMaps and the
// whole site loses power (every process of every node killed at once, /run,
// mounts, links and rules cleared, see harness.Node.PowerOff) and comes back
// in another start order: all at once, agents first, servers in reverse,
// one by one, random. After each: every node Ready, three healthy voters,
// every acknowledged write there, every pod back on its node (same UID).
//
// KEDGE_POWERLOSS_CYCLES (default 5) sets the cycles, KEDGE_ROBUSTNESS_SEED
// the seed of the orders and gaps (logged, to replay a failure).
func TestPowerLoss(t *testing.T) {
	cycles, seed := robustnessSettings(t, "KEDGE_POWERLOSS_CYCLES")
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	c := harness.NewCluster(t)
	image := testimage.Build(t)
	const secret = "e2e-power-loss-secret-0123456789"
	var a, b, cc, w1, w2 *harness.Node
	add := func(name string, args ...string) *harness.Node {
		n := c.AddNode(name, args...)
		testimage.Drop(t, n.DataDir(), image)
		return n
	}
	a = add("a", "--cluster-init", "--token", secret)
	url := func(n *harness.Node) string { return "https://" + n.IP().String() + ":6443" }
	b = add("b", "--server", url(a), "--token", secret)
	cc = add("c", "--server", url(a), "--token", secret)
	w1 = add("w1", "agent", "--server", url(a), "--token", secret)
	w2 = add("w2", "agent", "--server", url(b), "--token", secret)
	servers := []*harness.Node{a, b, cc}
	agents := []*harness.Node{w1, w2}
	all := []*harness.Node{a, b, cc, w1, w2}

	var report []string
	c.Step("form the site: every node started at once, in a random order", func() {
		order := shuffled(rng, all)
		startInOrder(c, rng, order, 0)
		d := waitSite(c, servers, all, time.Time{})
		report = append(report, fmt.Sprintf("formation  %-22s all Ready after %5.1f s", names(order), d.Seconds()))
	})
	podUID := map[string]string{}
	c.Step("a pod pinned to each node", func() {
		for _, n := range all {
			overrides := fmt.Sprintf(`{"spec":{"nodeName":%q}}`, n.Name())
			a.MustKubectl("run", "keep-"+n.Name(), "--image="+webImage, "--image-pull-policy=Never", "--port=8080", "--overrides="+overrides)
		}
		for _, n := range all {
			c.Eventually(3*time.Minute, "pod keep-"+n.Name()+" Running", func() error {
				out, err := a.Kubectl("get", "pod", "keep-"+n.Name(), "-o", "jsonpath={.status.phase} {.metadata.uid}")
				phase, uid, _ := strings.Cut(out, " ")
				if phase != "Running" {
					return fmt.Errorf("phase %q, %v", phase, err)
				}
				podUID[n.Name()] = uid
				return nil
			})
		}
	})

	orders := []struct {
		name  string
		order func() ([]*harness.Node, time.Duration)
	}{
		{"all at once", func() ([]*harness.Node, time.Duration) { return shuffled(rng, all), 0 }},
		{"agents first", func() ([]*harness.Node, time.Duration) {
			return append(shuffled(rng, agents), shuffled(rng, servers)...), 3 * time.Second
		}},
		{"servers in reverse", func() ([]*harness.Node, time.Duration) {
			return []*harness.Node{cc, b, a, w2, w1}, 2 * time.Second
		}},
		{"one by one", func() ([]*harness.Node, time.Duration) { return shuffled(rng, all), 10 * time.Second }},
		{"random", func() ([]*harness.Node, time.Duration) {
			return shuffled(rng, all), time.Duration(rng.IntN(5)) * time.Second
		}},
	}
	acked := map[string]string{} // ConfigMap → value, of every acknowledged create
	for i := 1; i <= cycles; i++ {
		o := orders[(i-1)%len(orders)]
		c.Step(fmt.Sprintf("cycle %d/%d: writes, power loss of the whole site, power back %s", i, cycles, o.name), func() {
			writes := writeUntilPowerOff(t, c, rng, servers, all, i, acked)
			order, gap := o.order()
			back := time.Now()
			startInOrder(c, rng, order, gap)
			d := waitSite(c, servers, all, back)
			checkWrites(t, c, servers, acked)
			checkPods(c, a, all, podUID)
			report = append(report, fmt.Sprintf("cycle %2d   %-22s all Ready after %5.1f s, %3d writes acked, %d total, 0 lost (order %s, gap %s)",
				i, o.name, d.Seconds(), writes, len(acked), names(order), gap))
		})
	}
	t.Logf("seed %d, %d cycles:\n%s", seed, cycles, strings.Join(report, "\n"))
	t.Log("\n" + c.Summary())
}

// robustnessSettings reads the cycle count from cyclesEnv (default 5) and
// KEDGE_ROBUSTNESS_SEED (default: the clock), and logs both, so that a run
// can be replayed.
func robustnessSettings(t *testing.T, cyclesEnv string) (int, uint64) {
	t.Helper()
	cycles, seed := 5, uint64(time.Now().UnixNano())
	if s := os.Getenv(cyclesEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", cyclesEnv, s)
		}
		cycles = n
	}
	if s := os.Getenv("KEDGE_ROBUSTNESS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KEDGE_ROBUSTNESS_SEED=%q: want a number", s)
		}
		seed = n
	}
	t.Logf("%s=%d KEDGE_ROBUSTNESS_SEED=%d (set both to replay this run)", cyclesEnv, cycles, seed)
	return cycles, seed
}

// shuffled returns a random permutation of nodes.
func shuffled(rng *rand.Rand, nodes []*harness.Node) []*harness.Node {
	out := append([]*harness.Node(nil), nodes...)
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// names lists the nodes' names: "b,a,w1".
func names(nodes []*harness.Node) string {
	var s []string
	for _, n := range nodes {
		s = append(s, n.Name())
	}
	return strings.Join(s, ",")
}

// startInOrder starts the nodes in order, gap apart (0: a random 0–500 ms,
// as machines that power up together).
func startInOrder(c *harness.Cluster, rng *rand.Rand, order []*harness.Node, gap time.Duration) {
	for i, n := range order {
		if i > 0 {
			d := gap
			if d == 0 {
				d = time.Duration(rng.IntN(500)) * time.Millisecond
			}
			time.Sleep(d)
		}
		n.Start()
	}
}

// waitSite waits until every node logged ready and is Ready with a
// heartbeat after since, seen from a server that answers, and the servers'
// etcd has three healthy voters with one leader. It returns the time from
// since (or from the first start) to then.
func waitSite(c *harness.Cluster, servers, all []*harness.Node, since time.Time) time.Duration {
	if since.IsZero() {
		since = all[0].Started()
		for _, n := range all {
			if n.Started().Before(since) {
				since = n.Started()
			}
		}
	}
	c.Eventually(10*time.Minute, "the whole site Ready", func() error {
		for _, n := range all {
			if !n.Running() {
				return fmt.Errorf("kedge exited on %s:\n%s", n.Name(), n.LogTail(2000))
			}
			if !n.LoggedReady() {
				return fmt.Errorf("%s has not logged ready", n.Name())
			}
		}
		var lastErr error
		for _, s := range servers {
			out, err := s.Kubectl("get", "nodes", "-o",
				`jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}{"\n"}{end}`)
			if err != nil {
				lastErr = err
				continue
			}
			return nodesReadySince(out, all, since.Add(-time.Second))
		}
		return lastErr
	})
	d := time.Since(since)
	c.Eventually(2*time.Minute, "three healthy voters", func() error {
		got, err := etcdMembers(servers[0])
		if err != nil {
			return err
		}
		if strings.Join(got, ",") != "a voter,b voter,c voter" {
			return fmt.Errorf("members %v", got)
		}
		return etcdHealthy(servers)
	})
	return d
}

// nodesReadySince checks kubectl's "name status heartbeat" lines: every
// node of want Ready with a heartbeat not before since.
func nodesReadySince(out string, want []*harness.Node, since time.Time) error {
	seen := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		ts, err := time.Parse(time.RFC3339, f[2])
		if err != nil || f[1] != "True" || ts.Before(since) {
			seen[f[0]] = "Ready=" + f[1] + " at " + f[2]
			continue
		}
		seen[f[0]] = "ok"
	}
	for _, n := range want {
		if seen[n.Name()] != "ok" {
			return fmt.Errorf("node %s: %q", n.Name(), seen[n.Name()])
		}
	}
	return nil
}

// writeUntilPowerOff creates ConfigMaps power-<cycle>-<i> through random
// servers (10 first, then more while the power goes), records the
// acknowledged ones in acked, and powers every node off at once. It
// returns how many creates were acknowledged.
func writeUntilPowerOff(t *testing.T, c *harness.Cluster, rng *rand.Rand, servers, all []*harness.Node, cycle int, acked map[string]string) int {
	var mu sync.Mutex
	n := 0
	create := func(i int, s *harness.Node) {
		name := fmt.Sprintf("power-%d-%d", cycle, i)
		value := fmt.Sprintf("%s-%d", s.Name(), time.Now().UnixNano())
		if _, err := s.Kubectl("create", "configmap", name, "--from-literal=v="+value, "--request-timeout=5s"); err == nil {
			mu.Lock()
			acked[name] = value
			n++
			mu.Unlock()
		}
	}
	for i := range 10 {
		create(i, servers[rng.IntN(len(servers))])
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 10; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			create(i, servers[i%len(servers)])
		}
	}()
	time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
	c.PowerOff(all...)
	close(stop)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if n < 10 {
		t.Fatalf("cycle %d: only %d of the first 10 creates were acknowledged", cycle, n)
	}
	return n
}

// checkWrites: every acknowledged ConfigMap is there with its value.
func checkWrites(t *testing.T, c *harness.Cluster, servers []*harness.Node, acked map[string]string) {
	c.Eventually(time.Minute, "every acknowledged write", func() error {
		out, err := servers[0].Kubectl("get", "configmaps", "-o", `jsonpath={range .items[*]}{.metadata.name} {.data.v}{"\n"}{end}`)
		if err != nil {
			return err
		}
		have := map[string]string{}
		for _, line := range strings.Split(out, "\n") {
			if name, v, ok := strings.Cut(line, " "); ok {
				have[name] = v
			}
		}
		var lost []string
		for name, v := range acked {
			if have[name] != v {
				lost = append(lost, fmt.Sprintf("%s=%q (have %q)", name, v, have[name]))
			}
		}
		if len(lost) > 0 {
			t.Fatalf("%d acknowledged writes lost: %v", len(lost), lost)
		}
		return nil
	})
}

// checkPods: every node's pinned pod is the same pod (UID) and Running on
// that node again.
func checkPods(c *harness.Cluster, server *harness.Node, all []*harness.Node, uid map[string]string) {
	for _, n := range all {
		c.Eventually(3*time.Minute, "pod keep-"+n.Name()+" back on its node", func() error {
			out, err := server.Kubectl("get", "pod", "keep-"+n.Name(), "-o", "jsonpath={.status.phase} {.metadata.uid} {.spec.nodeName} {.status.containerStatuses[0].ready}")
			if err != nil {
				return err
			}
			if want := "Running " + uid[n.Name()] + " " + n.Name() + " true"; out != want {
				return fmt.Errorf("%q, want %q", out, want)
			}
			return nil
		})
	}
}
