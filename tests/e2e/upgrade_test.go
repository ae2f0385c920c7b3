package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/testimage"
)

// TestUpgrade (issue 15, parts 2 and 3): rolling upgrades of a live HA
// cluster, both ways. Each path starts three servers and an agent on the
// previous release (the last commit that embeds the previous Kubernetes
// minor, built from git by scripts/build-previous.sh, or $KEDGE_PREV_BIN),
// a writer that creates ConfigMaps through the agent's load balancer, and a
// Deployment of four replicas under a PodDisruptionBudget (minAvailable 3).
//
//   - manual: each node's binary replaced by $KEDGE_BIN and kedge
//     restarted, one node at a time, servers first, then the agent — what
//     re-running install.sh does;
//   - automated: an Upgrade object (kedge.io/v1alpha1) pointing at the new
//     release in a directory of every node; the upgrade controller cordons,
//     drains, swaps the binary (checksum and version verified), restarts
//     (re-exec: the nodes run bare) and uncordons node by node.
//
// After each step, or at the end: every node Ready with the new version,
// etcd three healthy voters, `kubectl version` of the servers the new
// one, the web pods never fewer than the budget allows, every acknowledged
// write there; the longest gap between acknowledged writes is reported.
func TestUpgrade(t *testing.T) {
	prev := previousBinary(t)
	t.Run("manual", func(t *testing.T) { upgradeManually(t, prev) })
	t.Run("automated", func(t *testing.T) { upgradeAutomatically(t, prev) })
}

// upgradeCluster is a path's cluster on the previous release.
type upgradeCluster struct {
	c               *harness.Cluster
	a, b, cc, w     *harness.Node
	servers, all    []*harness.Node
	prevK8s, curK8s string
	web             map[string]string // pod name → UID
	wr              *upgradeWriter
}

// startUpgradeCluster forms the cluster on prev, deploys web with its
// budget (spread: the topology constraint's whenUnsatisfiable) and starts
// the writer.
func startUpgradeCluster(t *testing.T, prev, spread string) *upgradeCluster {
	c := harness.NewCluster(t)
	u := &upgradeCluster{c: c, web: map[string]string{}}
	cur := c.Bin()
	u.prevK8s, u.curK8s = binaryKubernetes(t, prev), binaryKubernetes(t, cur)
	t.Logf("upgrade: %s (%s) → %s (%s)", prev, u.prevK8s, cur, u.curK8s)
	image := testimage.Build(t)
	start := func(name string, args ...string) *harness.Node {
		n := c.AddNodeRunning(prev, name, args...)
		testimage.Drop(t, n.DataDir(), image)
		n.Start()
		return n
	}
	c.Step("three servers and an agent on the previous release", func() {
		u.a = start("a")
		u.a.WaitReady(5 * time.Minute)
		aURL := "https://" + u.a.IP().String() + ":6443"
		token := joinToken(t, u.a)
		u.b = start("b", "--server", aURL, "--token", token)
		u.b.WaitReady(5 * time.Minute)
		u.cc = start("c", "--server", aURL, "--token", token)
		u.cc.WaitReady(5 * time.Minute)
		waitVoters(c, u.a, "a voter,b voter,c voter", 3*time.Minute)
		u.w = start("w", "agent", "--server", aURL, "--token", agentToken(t, u.a))
		waitNodeReady(c, u.a, u.w, 5*time.Minute)
	})
	u.servers = []*harness.Node{u.a, u.b, u.cc}
	u.all = []*harness.Node{u.a, u.b, u.cc, u.w}
	for _, n := range u.all {
		checkNodeVersion(c, u.a, n, u.prevK8s)
	}
	c.Step("a Deployment of 4 replicas over the 4 nodes, PDB minAvailable 3", func() {
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
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: %s, labelSelector: {matchLabels: {app: web}}}
      containers:
      - {name: web, image: %s, imagePullPolicy: Never, ports: [{containerPort: 8080}]}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 3
  selector: {matchLabels: {app: web}}
`, spread, webImage)
		if err := os.WriteFile(filepath.Join(u.a.DataDir(), "web.yaml"), []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		u.a.MustKubectl("apply", "-f", "/var/lib/kedge/web.yaml")
		c.Eventually(4*time.Minute, "4 web pods Running, one per node", func() error {
			pods, err := webPods(u.a)
			if err != nil {
				return err
			}
			if len(pods) != 4 {
				return fmt.Errorf("%d pods Running and Ready: %v", len(pods), pods)
			}
			clear(u.web)
			for name, uid := range pods {
				u.web[name] = uid
			}
			return nil
		})
	})
	u.wr = startUpgradeWriter(t, c, u.a, u.w)
	t.Cleanup(u.wr.stop)
	c.Eventually(time.Minute, "writes through the load balancer", func() error {
		if u.wr.acked() == 0 {
			return fmt.Errorf("no write acknowledged yet")
		}
		return nil
	})
	return u
}

// checkUpgraded checks n after its upgrade: Ready with the new version,
// and for a server etcd's three healthy voters and its apiserver's version.
func (u *upgradeCluster) checkUpgraded(n *harness.Node) {
	other := u.a
	if n == u.a {
		other = u.b
	}
	waitNodeReady(u.c, other, n, 5*time.Minute)
	checkNodeVersion(u.c, other, n, u.curK8s)
	if n == u.w {
		return
	}
	u.c.Eventually(2*time.Minute, "etcd: three healthy voters", func() error {
		if err := etcdHealthy(u.servers); err != nil {
			return err
		}
		got, err := etcdMembers(n)
		if err != nil {
			return err
		}
		if s := strings.Join(got, ","); s != "a voter,b voter,c voter" {
			return fmt.Errorf("members %s", s)
		}
		return nil
	})
	checkServerVersion(u.c, n, u.curK8s)
}

// finish stops the writer and checks every acknowledged write and the budget.
func (u *upgradeCluster) finish(t *testing.T) {
	u.wr.stop()
	u.c.Step("every acknowledged write is there", func() {
		if missing := u.wr.missing(t); len(missing) > 0 {
			t.Errorf("%d acknowledged writes lost: %v", len(missing), missing[:min(10, len(missing))])
		}
	})
	if low := u.wr.minAvailable(); low < 3 {
		t.Errorf("%d web pods available at one time, under the budget's 3", low)
	}
}

func upgradeManually(t *testing.T, prev string) {
	u := startUpgradeCluster(t, prev, "DoNotSchedule")
	c, cur := u.c, u.c.Bin()
	type stepResult struct {
		node       string
		ready, gap time.Duration
		acked      int
	}
	var results []stepResult
	c.Step("an agent on the new release is refused while every server runs the previous one", func() {
		x := c.AddNode("x", "agent", "--server", "https://"+u.a.IP().String()+":6443", "--token", agentToken(t, u.a))
		x.Start()
		wantStopped(t, c, x, "newer than every server", u.curK8s, u.prevK8s)
	})
	for _, n := range u.all {
		c.Step("upgrade "+n.Name(), func() {
			before := u.wr.acked()
			t0 := time.Now()
			if err := n.Install(cur); err != nil {
				t.Fatal(err)
			}
			if out := n.Stop(); out != "exit=0" {
				t.Errorf("%s: the old kedge stopped with %s, want exit=0", n.Name(), out)
			}
			n.Start()
			if n != u.w {
				n.WaitReady(5 * time.Minute)
			}
			u.checkUpgraded(n)
			ready := time.Since(t0)
			other := u.a
			if n == u.a {
				other = u.b
			}
			c.Eventually(2*time.Minute, "the same 4 web pods Running and Ready", func() error {
				pods, err := webPods(other)
				if err != nil {
					return err
				}
				for name, uid := range u.web {
					if pods[name] != uid {
						return fmt.Errorf("pod %s (uid %s) is not Running and Ready: %v", name, uid, pods)
					}
				}
				return nil
			})
			results = append(results, stepResult{node: n.Name(), ready: ready, gap: u.wr.longestGapSince(t0), acked: u.wr.acked() - before})
		})
	}
	c.Step("the previous release is refused on an upgraded server's data, then the new one starts again", func() {
		if out := u.cc.Stop(); out != "exit=0" {
			t.Errorf("c: kedge stopped with %s, want exit=0", out)
		}
		if err := u.cc.Install(prev); err != nil {
			t.Fatal(err)
		}
		u.cc.Start()
		wantStopped(t, c, u.cc, "a downgrade of the datastore is refused", u.curK8s, u.prevK8s)
		if err := u.cc.Install(cur); err != nil {
			t.Fatal(err)
		}
		u.cc.Start()
		u.cc.WaitReady(5 * time.Minute)
		u.checkUpgraded(u.cc)
	})
	u.finish(t)
	var table strings.Builder
	fmt.Fprintf(&table, "manual upgrade %s → %s, writes through w's load balancer: %d acknowledged, %d failed attempts, longest gap %s\n",
		u.prevK8s, u.curK8s, u.wr.acked(), u.wr.failed(), u.wr.longestGapSince(time.Time{}).Round(10*time.Millisecond))
	fmt.Fprintf(&table, "| step | restart → Ready | longest write gap | writes acked |\n|---|---:|---:|---:|\n")
	for _, r := range results {
		fmt.Fprintf(&table, "| upgrade %s | %s | %s | %d |\n", r.node, r.ready.Round(100*time.Millisecond), r.gap.Round(10*time.Millisecond), r.acked)
	}
	t.Log("\n" + table.String())
	t.Log("\n" + c.Summary())
}

// wantStopped waits for the kedge just started in n to stop on its own,
// its log naming each of want (a refusal and the versions it names).
func wantStopped(t *testing.T, c *harness.Cluster, n *harness.Node, want ...string) {
	t.Helper()
	c.Eventually(2*time.Minute, n.Name()+" stops", func() error {
		if n.Running() {
			return fmt.Errorf("%s still running", n.Name())
		}
		return nil
	})
	log := n.LogSinceStart()
	for _, w := range want {
		if !strings.Contains(log, w) {
			t.Fatalf("%s: its log does not say %q:\n%s", n.Name(), w, n.LogTail(4096))
		}
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, want[0]) {
			t.Logf("%s refused: %s", n.Name(), line)
			break
		}
	}
}

func upgradeAutomatically(t *testing.T, prev string) {
	u := startUpgradeCluster(t, prev, "ScheduleAnyway")
	c, cur := u.c, u.c.Bin()
	curVersion := binaryVersionWord(t, cur)
	c.Step("the new release in /var/lib/kedge/release on every node", func() {
		for _, n := range u.all {
			dir := filepath.Join(n.DataDir(), "release")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			bin := filepath.Join(dir, "kedge-"+runtime.GOARCH)
			if out, err := exec.Command("cp", cur, bin).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v: %s", err, out)
			}
			cmd := exec.Command("sh", "-c", "sha256sum kedge-"+runtime.GOARCH+" > sha256sum-"+runtime.GOARCH+".txt")
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sha256sum: %v: %s", err, out)
			}
		}
	})
	t0 := time.Now()
	var order []string
	c.Step("an Upgrade to "+curVersion+": Succeeded", func() {
		manifest := fmt.Sprintf(`apiVersion: kedge.io/v1alpha1
kind: Upgrade
metadata: {name: next}
spec: {version: %q, path: /var/lib/kedge/release, drain: true}
`, curVersion)
		if err := os.WriteFile(filepath.Join(u.a.DataDir(), "upgrade.yaml"), []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		c.Eventually(2*time.Minute, "the Upgrade CRD served", func() error {
			_, err := u.a.Kubectl("apply", "-f", "/var/lib/kedge/upgrade.yaml")
			return err
		})
		c.Eventually(20*time.Minute, "Upgrade next Succeeded", func() error {
			var out string
			var err error
			for _, n := range u.servers { // any server that answers
				if out, err = n.Kubectl("get", "upgrade", "next", "-o", `jsonpath={.status.phase} {range .status.nodes[*]}{.name}={.phase} {end}`); err == nil {
					break
				}
			}
			if err != nil {
				return err
			}
			fields := strings.Fields(out)
			if len(fields) == 0 {
				return fmt.Errorf("the Upgrade has no status yet")
			}
			for _, f := range fields[1:] {
				if name, phase, _ := strings.Cut(f, "="); phase == "Succeeded" && !slices.Contains(order, name) {
					order = append(order, name)
				}
			}
			if strings.HasPrefix(out, "Failed") {
				msg, _ := u.a.Kubectl("get", "upgrade", "next", "-o", "jsonpath={.status.message}")
				t.Fatalf("the Upgrade failed: %s", msg)
			}
			if !strings.HasPrefix(out, "Succeeded") {
				return fmt.Errorf("upgrade: %s", out)
			}
			return nil
		})
	})
	took := time.Since(t0)
	for _, n := range u.all {
		u.checkUpgraded(n)
		if v, err := u.a.Kubectl("get", "node", n.Name(), "-o", `jsonpath={.metadata.annotations.kedge\.io/version} unschedulable={.spec.unschedulable}`); err != nil || v != curVersion+" unschedulable=" {
			t.Errorf("node %s after the upgrade: %q, %v; want version %s, schedulable", n.Name(), v, err, curVersion)
		}
	}
	if want := []string{"a", "b", "c", "w"}; !slices.Equal(order, want) {
		t.Errorf("nodes upgraded in the order %v, want %v (servers first)", order, want)
	}
	u.finish(t)
	t.Logf("automated upgrade %s → %s (%s): %s for 4 nodes, order %v; writes through w's load balancer: %d acknowledged, %d failed attempts, longest gap %s",
		u.prevK8s, u.curK8s, curVersion, took.Round(time.Second), order, u.wr.acked(), u.wr.failed(), u.wr.longestGapSince(t0).Round(10*time.Millisecond))
	t.Log("\n" + c.Summary())
}

// binaryVersionWord is a kedge binary's version (`kedge --version`'s
// "kedge version v1.37.2+kedge1 (…)": the word after "version").
func binaryVersionWord(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	if len(f) < 3 || f[1] != "version" {
		t.Fatalf("%s --version: %q", bin, out)
	}
	return f[2]
}

// previousBinary is $KEDGE_PREV_BIN, or the previous release built by
// scripts/build-previous.sh (cached; a few minutes the first time). The
// test is skipped when no commit embeds an older Kubernetes minor.
func previousBinary(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 || os.Getenv("KEDGE_BIN") == "" {
		t.Skip("e2e tests need root and KEDGE_BIN")
	}
	if p := os.Getenv("KEDGE_PREV_BIN"); p != "" {
		return p
	}
	script, err := filepath.Abs("../../scripts/build-previous.sh")
	if err != nil {
		t.Fatal(err)
	}
	t.Log("building the previous release with scripts/build-previous.sh (KEDGE_PREV_BIN skips this)")
	cmd := exec.Command(script)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 3 {
		t.Skip("no commit embeds an older Kubernetes minor than HEAD (set KEDGE_PREV_REF or KEDGE_PREV_BIN)")
	}
	if err != nil {
		t.Fatalf("scripts/build-previous.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

var kubernetesVersion = regexp.MustCompile(`kubernetes (v\d+\.\d+\.\S+)`)

// binaryKubernetes is the Kubernetes version a kedge binary embeds
// (`kedge --version`: "v1.36.4+kedge1 (0ea5c7a) kubernetes v1.36.4").
func binaryKubernetes(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v: %s", bin, err, out)
	}
	m := kubernetesVersion.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("%s --version: no Kubernetes version in %q", bin, out)
	}
	return m[1]
}

// checkNodeVersion waits until n's Node reports kubelet version want.
func checkNodeVersion(c *harness.Cluster, server, n *harness.Node, want string) {
	c.Eventually(time.Minute, "node "+n.Name()+" reports "+want, func() error {
		got, err := server.Kubectl("get", "node", n.Name(), "-o", "jsonpath={.status.nodeInfo.kubeletVersion}")
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("kubelet version %q, want %q", got, want)
		}
		return nil
	})
}

// checkServerVersion checks `kubectl version` against n's own apiserver.
func checkServerVersion(c *harness.Cluster, n *harness.Node, want string) {
	c.Eventually(time.Minute, "kubectl version on "+n.Name()+" says "+want, func() error {
		out, err := n.Kubectl("version", "-o", "json")
		if err != nil {
			return err
		}
		var v struct {
			Server struct {
				GitVersion string `json:"gitVersion"`
			} `json:"serverVersion"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			return err
		}
		if v.Server.GitVersion != want {
			return fmt.Errorf("server version %q, want %q", v.Server.GitVersion, want)
		}
		return nil
	})
}

// webPods are the Running and Ready web pods: name → UID.
func webPods(n *harness.Node) (map[string]string, error) {
	out, err := n.Kubectl("get", "pods", "-l", "app=web", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.status.phase} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	if err != nil {
		return nil, err
	}
	pods := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 4 && f[2] == "Running" && f[3] == "True" {
			pods[f[0]] = f[1]
		}
	}
	return pods, nil
}

// upgradeWriter creates ConfigMaps through the agent's load balancer, one
// after the other, recording each acknowledged write and the attempts that
// failed; it also samples the web Deployment's available pods.
type upgradeWriter struct {
	client kubernetes.Interface
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	mu       sync.Mutex
	ok       []time.Time // when each acknowledged write was acknowledged
	names    []string
	failures int
	lowest   int // fewest available web pods seen (-1: not sampled)
}

func startUpgradeWriter(t *testing.T, c *harness.Cluster, a, w *harness.Node) *upgradeWriter {
	t.Helper()
	kubeconfig, err := os.ReadFile(filepath.Join(a.Dir(), "etc-kedge", "kedge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.Host = "https://" + linLBAddress
	cfg.Dial = w.DialContext
	cfg.Timeout = 5 * time.Second
	cfg.UserAgent = "kedge-e2e-upgrade"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wr := &upgradeWriter{client: client, cancel: cancel, done: make(chan struct{}), lowest: -1}
	go wr.run(ctx)
	return wr
}

func (wr *upgradeWriter) run(ctx context.Context) {
	defer close(wr.done)
	for i := 0; ctx.Err() == nil; i++ {
		name := fmt.Sprintf("upgrade-%05d", i)
		_, err := wr.client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"i": fmt.Sprint(i)},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			err = nil // an earlier attempt that timed out did commit
		}
		if ctx.Err() != nil {
			return
		}
		avail := -1
		if d, derr := wr.client.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{}); derr == nil {
			avail = int(d.Status.AvailableReplicas)
		}
		wr.mu.Lock()
		if err == nil {
			wr.ok = append(wr.ok, time.Now())
			wr.names = append(wr.names, name)
		} else {
			wr.failures++
			i-- // the same name again: an unacknowledged write is retried, never counted
		}
		if avail >= 0 && (wr.lowest < 0 || avail < wr.lowest) {
			wr.lowest = avail
		}
		wr.mu.Unlock()
		if err != nil {
			time.Sleep(100 * time.Millisecond)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (wr *upgradeWriter) stop() { wr.once.Do(func() { wr.cancel(); <-wr.done }) }

func (wr *upgradeWriter) acked() int {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	return len(wr.ok)
}

func (wr *upgradeWriter) failed() int {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	return wr.failures
}

// minAvailable is the fewest available web pods the writer saw (through
// the load balancer; the Deployment's status as the controller reports it).
func (wr *upgradeWriter) minAvailable() int {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	if wr.lowest < 0 {
		return 4
	}
	return wr.lowest
}

// longestGapSince is the longest time between two acknowledged writes (or
// from since to the first) after since, up to now.
func (wr *upgradeWriter) longestGapSince(since time.Time) time.Duration {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	var gap time.Duration
	last := since
	for _, at := range wr.ok {
		if at.Before(since) {
			continue
		}
		if !last.IsZero() && at.Sub(last) > gap {
			gap = at.Sub(last)
		}
		last = at
	}
	if !last.IsZero() && time.Since(last) > gap {
		gap = time.Since(last)
	}
	return gap
}

// missing lists the acknowledged writes that are not in the cluster.
func (wr *upgradeWriter) missing(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := wr.client.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list ConfigMaps: %v", err)
	}
	have := map[string]bool{}
	for _, cm := range list.Items {
		have[cm.Name] = true
	}
	wr.mu.Lock()
	defer wr.mu.Unlock()
	var out []string
	for _, name := range wr.names {
		if !have[name] {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}
