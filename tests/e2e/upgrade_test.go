package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// TestUpgrade (issue 15, part 2): a rolling upgrade of a live HA cluster.
// Three servers and an agent start on the previous release (the last commit
// that embeds the previous Kubernetes minor, built from git by
// scripts/build-previous.sh, or $KEDGE_PREV_BIN); a writer creates
// ConfigMaps through the agent's load balancer and a Deployment of four
// replicas runs under a PodDisruptionBudget (minAvailable 3). Then each
// node's binary is replaced by $KEDGE_BIN and kedge restarted, one node at a
// time, servers first, then the agent — what re-running install.sh does.
// After each step: the node is Ready and reports the new version, etcd has
// three healthy voters, `kubectl version` through the upgraded server is
// the new one, the web pods are the same pods (kept, never below the
// budget). At the end every acknowledged write is there; the longest gap
// between acknowledged writes through the balancer is reported.
func TestUpgrade(t *testing.T) {
	prev := previousBinary(t)
	c := harness.NewCluster(t)
	cur := c.Bin()
	prevK8s, curK8s := binaryKubernetes(t, prev), binaryKubernetes(t, cur)
	t.Logf("upgrade: %s (%s) → %s (%s)", prev, prevK8s, cur, curK8s)
	image := testimage.Build(t)
	start := func(name string, args ...string) *harness.Node {
		n := c.AddNodeRunning(prev, name, args...)
		testimage.Drop(t, n.DataDir(), image)
		n.Start()
		return n
	}
	var a, b, cc, w *harness.Node
	c.Step("three servers and an agent on the previous release", func() {
		a = start("a")
		a.WaitReady(5 * time.Minute)
		aURL := "https://" + a.IP().String() + ":6443"
		token := joinToken(t, a)
		b = start("b", "--server", aURL, "--token", token)
		b.WaitReady(5 * time.Minute)
		cc = start("c", "--server", aURL, "--token", token)
		cc.WaitReady(5 * time.Minute)
		waitVoters(c, a, "a voter,b voter,c voter", 3*time.Minute)
		w = start("w", "agent", "--server", aURL, "--token", agentToken(t, a))
		waitNodeReady(c, a, w, 5*time.Minute)
	})
	servers := []*harness.Node{a, b, cc}
	all := []*harness.Node{a, b, cc, w}
	for _, n := range all {
		checkNodeVersion(c, a, n, prevK8s)
	}

	web := map[string]string{} // pod name → UID
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
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - {name: web, image: %s, imagePullPolicy: Never, ports: [{containerPort: 8080}]}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 3
  selector: {matchLabels: {app: web}}
`, webImage)
		if err := os.WriteFile(filepath.Join(a.DataDir(), "web.yaml"), []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		a.MustKubectl("apply", "-f", "/var/lib/kedge/web.yaml")
		c.Eventually(4*time.Minute, "4 web pods Running, one per node", func() error {
			pods, err := webPods(a)
			if err != nil {
				return err
			}
			if len(pods) != 4 {
				return fmt.Errorf("%d pods Running and Ready: %v", len(pods), pods)
			}
			clear(web)
			for name, uid := range pods {
				web[name] = uid
			}
			return nil
		})
	})

	wr := startUpgradeWriter(t, c, a, w)
	defer wr.stop()
	c.Eventually(time.Minute, "writes through the load balancer", func() error {
		if wr.acked() == 0 {
			return fmt.Errorf("no write acknowledged yet")
		}
		return nil
	})

	type stepResult struct {
		node       string
		ready, gap time.Duration
		acked      int
	}
	var results []stepResult
	for _, n := range all {
		c.Step("upgrade "+n.Name(), func() {
			before := wr.acked()
			t0 := time.Now()
			if err := n.Install(cur); err != nil {
				t.Fatal(err)
			}
			if out := n.Stop(); out != "exit=0" {
				t.Errorf("%s: the old kedge stopped with %s, want exit=0", n.Name(), out)
			}
			n.Start()
			other := a
			if n == a {
				other = b
			}
			if n != w {
				n.WaitReady(5 * time.Minute)
			}
			waitNodeReady(c, other, n, 5*time.Minute)
			ready := time.Since(t0)
			checkNodeVersion(c, other, n, curK8s)
			if n != w {
				c.Eventually(2*time.Minute, "etcd: three healthy voters", func() error {
					if err := etcdHealthy(servers); err != nil {
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
				checkServerVersion(c, n, curK8s)
			}
			c.Eventually(2*time.Minute, "the same 4 web pods Running and Ready", func() error {
				pods, err := webPods(other)
				if err != nil {
					return err
				}
				for name, uid := range web {
					if pods[name] != uid {
						return fmt.Errorf("pod %s (uid %s) is not Running and Ready: %v", name, uid, pods)
					}
				}
				return nil
			})
			if low := wr.minAvailable(); low < 3 {
				t.Errorf("%s: %d web pods available at one time, under the budget's 3", n.Name(), low)
			}
			results = append(results, stepResult{node: n.Name(), ready: ready, gap: wr.longestGapSince(t0), acked: wr.acked() - before})
		})
	}
	wr.stop()

	c.Step("every acknowledged write is there", func() {
		missing := wr.missing(t)
		if len(missing) > 0 {
			t.Errorf("%d acknowledged writes lost: %v", len(missing), missing[:min(10, len(missing))])
		}
	})
	var table strings.Builder
	fmt.Fprintf(&table, "upgrade %s → %s, writes through w's load balancer: %d acknowledged, %d failed attempts, longest gap %s\n",
		prevK8s, curK8s, wr.acked(), wr.failed(), wr.longestGapSince(time.Time{}).Round(10*time.Millisecond))
	fmt.Fprintf(&table, "| step | restart → Ready | longest write gap | writes acked |\n|---|---:|---:|---:|\n")
	for _, r := range results {
		fmt.Fprintf(&table, "| upgrade %s | %s | %s | %d |\n", r.node, r.ready.Round(100*time.Millisecond), r.gap.Round(10*time.Millisecond), r.acked)
	}
	t.Log("\n" + table.String())
	t.Log("\n" + c.Summary())
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
