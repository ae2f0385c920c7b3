package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Network of the test nodes: the host bridge holds .1, nodes get .11, .12, …
const (
	BridgeName = "kedge-e2e0"
	subnet     = "172.31.250."
	prefixLen  = 24
	firstNode  = 11
)

// Cluster is a set of nodes on one test bridge. Everything it creates is
// removed by a cleanup registered on the test.
type Cluster struct {
	t   *testing.T
	id  string // short random id: cgroup and interface names
	dir string // <t.TempDir()>: one directory per node
	bin string // the kedge binary ($KEDGE_BIN)
	exe string // the test binary, re-executed as each node's init

	mu    sync.Mutex
	nodes []*Node
	steps []step
}

type step struct {
	name string
	d    time.Duration
	ok   bool
}

// NewCluster creates the bridge and registers the cleanup that stops every
// node, runs `kedge killall` in each, removes their namespaces, interfaces,
// cgroups and the bridge, checks nothing is left on the host and prints the
// step times. It skips the test unless run as root with $KEDGE_BIN set.
func NewCluster(t *testing.T) *Cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("e2e tests create namespaces and run kedge nodes: they need root")
	}
	bin := os.Getenv("KEDGE_BIN")
	if bin == "" {
		t.Skip("KEDGE_BIN is not set (run `make e2e`)")
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("KEDGE_BIN: %v", err)
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Fatalf("nsenter (util-linux) is needed to run commands in a node: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 2)
	if _, err := rand.Read(id); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, id: hex.EncodeToString(id), dir: t.TempDir(), bin: bin, exe: exe}
	if err := checkFreeDisk(c.dir); err != nil {
		t.Fatal(err)
	}
	if err := createBridge(); err != nil {
		t.Fatal(err)
	}
	// The bridge is ours: no other cluster runs, what is left is stale.
	removeStaleCgroups()
	t.Cleanup(c.cleanup)
	return c
}

// clusterDiskUse is about what a cluster's nodes write below the test's
// directory (images imported on every node, containerd's snapshots, etcd,
// logs), for the free-space check.
const clusterDiskUse = 3 << 30

// evictionFreePercent is the kubelet's hard eviction threshold for free
// disk that kedge sets (nodefs.available and imagefs.available, pkg/kubelet).
const evictionFreePercent = 5

// checkFreeDisk refuses to start a cluster whose nodes would soon run
// below the kubelet's free-disk eviction threshold on dir's filesystem
// (the host's: every node keeps its data dir below dir): they would then
// evict pods and fail tests for a reason that has nothing to do with them.
func checkFreeDisk(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("free disk of %s: %w", dir, err)
	}
	total, free := st.Blocks*uint64(st.Bsize), st.Bavail*uint64(st.Bsize)
	need := total*evictionFreePercent/100 + clusterDiskUse
	if free < need {
		return fmt.Errorf("the filesystem of %s has %.1f GiB free of %.1f GiB: the nodes' kubelets evict pods below %d%% free "+
			"(%.1f GiB) and a cluster writes about %.0f GiB; free at least %.1f GiB first",
			dir, float64(free)/(1<<30), float64(total)/(1<<30), evictionFreePercent, float64(total*evictionFreePercent/100)/(1<<30),
			float64(clusterDiskUse)/(1<<30), float64(need-free)/(1<<30))
	}
	return nil
}

// Bin is the kedge binary the nodes run.
func (c *Cluster) Bin() string { return c.bin }

// BridgeIP is the host's address on the nodes' network.
func BridgeIP() net.IP { return net.ParseIP(subnet + "1") }

var nodeName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,7})$`)

// AddNode boots a node "machine": its namespaces, mounts, network and
// kubelet cgroup root. kedge is not started (Node.Start). args are kedge's
// arguments after the role (default "server"); the harness adds
// --node-ip=<its address> unless args set --node-ip, and
// --kubelet-arg=cgroup-root=<its cgroup root>. The name (up to 8 of
// [a-z0-9-]) is the node's hostname, hence its default node name.
func (c *Cluster) AddNode(name string, args ...string) *Node {
	c.t.Helper()
	return c.addNode("", name, args...)
}

// AddNodeRunning is AddNode for a node that runs its own copy of a kedge
// binary, installed at <node dir>/bin/kedge as a copy of bin: Node.Install
// replaces it, as an upgrade of the machine does. Commands run in the node
// (Kubectl) use the cluster's binary, as before.
func (c *Cluster) AddNodeRunning(bin, name string, args ...string) *Node {
	c.t.Helper()
	return c.addNode(bin, name, args...)
}

func (c *Cluster) addNode(bin, name string, args ...string) *Node {
	c.t.Helper()
	if !nodeName.MatchString(name) {
		c.t.Fatalf("AddNode %q: the name must match %s", name, nodeName)
	}
	c.mu.Lock()
	for _, n := range c.nodes {
		if n.name == name {
			c.mu.Unlock()
			c.t.Fatalf("AddNode %q: already added", name)
		}
	}
	ip := net.ParseIP(fmt.Sprintf("%s%d", subnet, firstNode+len(c.nodes)))
	n := &Node{c: c, name: name, ip: ip, dir: filepath.Join(c.dir, name)}
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()

	role := "server"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		role, args = args[0], args[1:]
	}
	exe := c.bin
	if bin != "" {
		exe = n.binary()
		if err := n.Install(bin); err != nil {
			c.t.Fatalf("AddNodeRunning %q: %v", name, err)
		}
	}
	n.argv = append([]string{exe, role}, args...)
	if !hasFlag(args, "--node-ip") {
		n.argv = append(n.argv, "--node-ip="+ip.String())
	}
	n.argv = append(n.argv, "--kubelet-arg=cgroup-root="+n.CgroupRoot())
	if err := n.boot(); err != nil {
		c.t.Fatalf("boot node %s: %v\n%s", name, err, n.initLog())
	}
	return n
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// Nodes returns the nodes in the order they were added.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.nodes...)
}

// Step runs f as a named step and records its duration for the summary the
// cleanup prints. A step that fails the test (t.Fatal in f) is recorded as
// failed.
func (c *Cluster) Step(name string, f func()) {
	c.t.Helper()
	begin := time.Now()
	failedBefore := c.t.Failed()
	ok := false
	defer func() {
		d := time.Since(begin)
		c.mu.Lock()
		c.steps = append(c.steps, step{name: name, d: d, ok: ok})
		c.mu.Unlock()
		status := "done"
		if !ok {
			status = "FAILED"
		}
		c.t.Logf("step %q %s in %s", name, status, d.Round(time.Millisecond))
	}()
	f()
	ok = failedBefore || !c.t.Failed()
}

// Summary is the table of the steps so far and their durations.
func (c *Cluster) Summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	width := len("step")
	for _, s := range c.steps {
		width = max(width, len(s.name))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s  %10s\n", width, "step", "time")
	var total time.Duration
	for _, s := range c.steps {
		mark := ""
		if !s.ok {
			mark = "  FAILED"
		}
		fmt.Fprintf(&b, "%-*s  %9.1fs%s\n", width, s.name, s.d.Seconds(), mark)
		total += s.d
	}
	fmt.Fprintf(&b, "%-*s  %9.1fs\n", width, "total", total.Seconds())
	return b.String()
}

// cleanup tears every node down, then the bridge, checks the host is clean
// and prints the summary.
func (c *Cluster) cleanup() {
	t := c.t
	if t.Failed() {
		for _, n := range c.Nodes() {
			t.Logf("node %s: kedge log (last 8000 bytes):\n%s", n.name, tailFile(n.LogFile(), 8000))
			if log := n.initLog(); log != "" {
				t.Logf("node %s: init log:\n%s", n.name, log)
			}
		}
	}
	c.Step("teardown (stop, kedge killall, namespaces, links, cgroups)", func() {
		var wg sync.WaitGroup
		for _, n := range c.Nodes() {
			wg.Add(1)
			go func() { defer wg.Done(); n.teardown() }()
		}
		wg.Wait()
		if err := deleteBridge(); err != nil {
			t.Errorf("delete bridge %s: %v", BridgeName, err)
		}
		for _, problem := range c.leftovers() {
			t.Errorf("left on the host: %s", problem)
		}
	})
	if dir := os.Getenv("KEDGE_E2E_LOGS"); dir != "" {
		c.saveLogs(filepath.Join(dir, t.Name()))
	}
	t.Logf("step times (%s):\n%s", t.Name(), c.Summary())
}

// saveLogs copies each node's kedge and init logs to dir/<node>/.
func (c *Cluster) saveLogs(dir string) {
	for _, n := range c.Nodes() {
		to := filepath.Join(dir, n.name)
		if err := os.MkdirAll(to, 0o755); err != nil {
			c.t.Errorf("KEDGE_E2E_LOGS: %v", err)
			return
		}
		for _, f := range []string{n.LogFile(), filepath.Join(n.dir, "init.log")} {
			if raw, err := os.ReadFile(f); err == nil {
				_ = os.WriteFile(filepath.Join(to, filepath.Base(f)), raw, 0o644)
			}
		}
	}
	c.t.Logf("node logs saved in %s", dir)
}

// leftovers lists what the cluster left on the host.
func (c *Cluster) leftovers() []string {
	var out []string
	if links, err := hostLinks(); err != nil {
		out = append(out, "list links: "+err.Error())
	} else {
		for _, l := range links {
			if l == BridgeName || strings.HasPrefix(l, vethPrefix(c.id)) {
				out = append(out, "interface "+l)
			}
		}
	}
	raw, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], c.dir) {
			out = append(out, "mount "+f[4])
		}
	}
	for _, n := range c.Nodes() {
		for _, p := range n.processesInNamespaces() {
			out = append(out, fmt.Sprintf("process %s of node %s", p, n.name))
		}
		for _, d := range cgroupDirs(n.CgroupRoot()) {
			out = append(out, "cgroup "+d)
		}
	}
	return out
}

func tailFile(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(raw) > n {
		raw = raw[len(raw)-n:]
	}
	return string(raw)
}
