package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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
)

// slowDiskIOPS is the write IOPS the slow server's disk is throttled to:
// etcd's fdatasync then takes about a second, its warning threshold.
const slowDiskIOPS = 3

// slowDiskMinFree keeps the disk guard quiet on the 400 MiB filesystems
// (the default 256Mi is more than they have free).
const slowDiskMinFree = "--etcd-min-free=64Mi"

// slowDiskFor is how long the leader's disk stays slow.
const slowDiskFor = 150 * time.Second

// TestSlowDisk (issue 14, part 3): three servers, each with etcd's data on
// an ext4 filesystem of its own (a loop device). The etcd leader's disk is
// made slow: its kedge process is moved into a cgroup v1 blkio group that
// allows slowDiskIOPS write IOPS on that device, so every WAL fdatasync
// waits. For slowDiskFor a writer creates ConfigMaps through every server.
// The disk really is slow (the WAL fsync mean on that server is well over
// a disk's), leader changes stay bounded (leadership may move off the slow
// disk, it must not flap), writes keep being acknowledged, every
// acknowledged write is there afterwards, and kedge logs each of etcd's
// slow-disk warnings at most once a minute (with the count it held back)
// instead of once a write.
func TestSlowDisk(t *testing.T) {
	c := harness.NewCluster(t)
	const db = "/var/lib/kedge/server/db"
	loopDB := func(n *harness.Node) {
		img := filepath.Join(n.Dir(), "db.img")
		for _, cmd := range [][]string{
			{"truncate", "-s", "400M", img},
			{"mkfs.ext4", "-q", "-F", img},
			{"mkdir", "-p", db},
			{"mount", "-o", "loop", img, db},
			{"chmod", "0700", db},
		} {
			if out, err := n.Exec(cmd...); err != nil {
				t.Fatalf("%s: %v: %v: %s", n.Name(), cmd, err, out)
			}
		}
	}
	var a, b, cc *harness.Node
	c.Step("three servers, etcd's data of each on its own loop device", func() {
		a = c.AddNode("a", slowDiskMinFree)
		loopDB(a)
		a.Start()
		a.WaitReady(5 * time.Minute)
		aURL := "https://" + a.IP().String() + ":6443"
		token := joinToken(t, a)
		b = c.AddNode("b", "--server", aURL, "--token", token, slowDiskMinFree)
		loopDB(b)
		b.Start()
		b.WaitReady(5 * time.Minute)
		cc = c.AddNode("c", "--server", aURL, "--token", token, slowDiskMinFree)
		loopDB(cc)
		cc.Start()
		cc.WaitReady(5 * time.Minute)
		waitVoters(c, a, "a voter,b voter,c voter", 3*time.Minute)
	})
	servers := []*harness.Node{a, b, cc}
	var slow *harness.Node
	c.Eventually(time.Minute, "an etcd leader", func() (err error) {
		slow, err = etcdLeader(servers)
		return err
	})
	changesBefore := leaderChanges(t, servers)
	fsyncBefore := walFsync(t, slow)

	clients := slowDiskClients(t, a, servers)
	cg := slowDiskCgroup(t, c, slow, db)
	t.Logf("leader %s: write IOPS on its etcd disk limited to %d for %s", slow.Name(), slowDiskIOPS, slowDiskFor)
	logBefore := len(slow.LogSinceStart())

	var (
		mu      sync.Mutex
		acked   []string
		failed  int
		leaders []string
	)
	ctx, cancel := context.WithTimeout(context.Background(), slowDiskFor)
	defer cancel()
	var wg sync.WaitGroup
	for i, client := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ctx.Err() == nil; j++ {
				name := fmt.Sprintf("slow-%d-%05d", i, j)
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := client.CoreV1().ConfigMaps("default").Create(wctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
				wcancel()
				if apierrors.IsAlreadyExists(err) {
					err = nil // a timed-out attempt that committed
				}
				mu.Lock()
				if err == nil {
					acked = append(acked, name)
				} else if ctx.Err() == nil {
					failed++
					j-- // retry the same name: an unacknowledged write is never counted
				}
				mu.Unlock()
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	c.Step(fmt.Sprintf("the leader's disk slow for %s under writes", slowDiskFor), func() {
		for ctx.Err() == nil {
			if l, err := etcdLeader(servers); err == nil {
				if len(leaders) == 0 || leaders[len(leaders)-1] != l.Name() {
					leaders = append(leaders, l.Name())
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
		wg.Wait()
	})
	fsyncAfter := walFsync(t, slow)
	cg.release()
	changes := leaderChanges(t, servers) - changesBefore
	slowLog := slow.LogSinceStart()[logBefore:]

	c.Step("after the slow disk: every acknowledged write there, etcd healthy", func() {
		c.Eventually(2*time.Minute, "three healthy voters", func() error { return etcdHealthy(servers) })
		list, err := clients[0].CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, cm := range list.Items {
			have[cm.Name] = true
		}
		var lost []string
		for _, name := range acked {
			if !have[name] {
				lost = append(lost, name)
			}
		}
		if len(lost) > 0 {
			t.Errorf("%d acknowledged writes lost: %v", len(lost), lost[:min(len(lost), 10)])
		}
	})

	n := fsyncAfter.count - fsyncBefore.count
	mean := time.Duration(0)
	if n > 0 {
		mean = time.Duration((fsyncAfter.sum - fsyncBefore.sum) / float64(n) * float64(time.Second))
	}
	warnings := map[string]int{}
	for _, m := range []string{"slow fdatasync", "apply request took too long", "request stats", "leader failed to send out heartbeat on time"} {
		warnings[m] = strings.Count(slowLog, `msg="`+m)
	}
	held := 0
	for _, m := range regexp.MustCompile(`repeated_since_last_logged=(\d+)`).FindAllStringSubmatch(slowLog, -1) {
		v, _ := strconv.Atoi(m[1])
		held += v
	}
	t.Logf("slow disk on %s for %s: %d WAL fsyncs, mean %s; leader changes %d (leaders %v); writes acked %d, failed attempts %d; warnings logged %v, held back %d",
		slow.Name(), slowDiskFor, n, mean.Round(time.Millisecond), changes, leaders, len(acked), failed, warnings, held)

	if mean < 100*time.Millisecond {
		t.Errorf("the disk was not slow: WAL fsync mean %s over %d fsyncs (the throttle did not bite)", mean, n)
	}
	if changes > 2 {
		t.Errorf("%d leader changes in %s (leaders %v): want at most 2 (leadership may move off the slow disk, not flap)", changes, slowDiskFor, leaders)
	}
	if len(acked) < 100 {
		t.Errorf("only %d writes acknowledged in %s", len(acked), slowDiskFor)
	}
	// Once a minute each, plus the first: at most 4 lines of a kind in 150 s.
	limit := int(slowDiskFor/time.Minute) + 2
	for m, count := range warnings {
		if count > limit {
			t.Errorf("%q logged %d times in %s, want at most %d (once a minute)", m, count, slowDiskFor, limit)
		}
	}
	t.Log("\n" + c.Summary())
}

// slowDiskClients are admin clients of each server's apiserver, from the
// host over the bridge.
func slowDiskClients(t *testing.T, a *harness.Node, servers []*harness.Node) []kubernetes.Interface {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(a.Dir(), "etc-kedge", "kedge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	var out []kubernetes.Interface
	for _, n := range servers {
		cfg := rest.CopyConfig(base)
		cfg.Host = "https://" + n.IP().String() + ":6443"
		cfg.UserAgent = "kedge-e2e-slowdisk"
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, client)
	}
	return out
}

// blkioGroup is a cgroup v1 blkio group that throttles a node's kedge.
type blkioGroup struct {
	t    *testing.T
	n    *harness.Node
	dir  string
	once sync.Once
}

// slowDiskCgroup moves n's kedge processes into a new blkio group that
// allows slowDiskIOPS write IOPS on the device holding dir in n.
func slowDiskCgroup(t *testing.T, c *harness.Cluster, n *harness.Node, dir string) *blkioGroup {
	t.Helper()
	const root = "/sys/fs/cgroup/blkio"
	if _, err := os.Stat(filepath.Join(root, "blkio.throttle.write_iops_device")); err != nil {
		t.Skipf("no cgroup v1 blkio throttling here: %v", err)
	}
	dev, err := n.Exec("findmnt", "-no", "SOURCE", dir)
	if err != nil {
		t.Fatal(err)
	}
	majMin, err := n.Exec("lsblk", "-dno", "MAJ:MIN", dev)
	if err != nil {
		t.Fatal(err)
	}
	g := &blkioGroup{t: t, n: n, dir: filepath.Join(root, "kedge-e2e-slow-"+n.Name()+"-"+strconv.Itoa(os.Getpid()))}
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.release)
	rule := strings.TrimSpace(majMin) + " " + strconv.Itoa(slowDiskIOPS)
	if err := os.WriteFile(filepath.Join(g.dir, "blkio.throttle.write_iops_device"), []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	// cgroup.procs takes pids of the writer's PID namespace: move them from
	// inside the node. Every thread of kedge (etcd's included) moves with it.
	if out, err := n.Exec("sh", "-c", "for p in $("+kedgePIDs(n)+"); do echo $p > "+g.dir+"/cgroup.procs; done; cat "+g.dir+"/cgroup.procs"); err != nil || out == "" {
		t.Fatalf("move kedge into %s: %v: %q", g.dir, err, out)
	}
	return g
}

// release moves the processes back to the root group and removes it.
func (g *blkioGroup) release() {
	g.once.Do(func() {
		procs, _ := os.ReadFile(filepath.Join(g.dir, "cgroup.procs"))
		for _, p := range strings.Fields(string(procs)) {
			_ = os.WriteFile("/sys/fs/cgroup/blkio/cgroup.procs", []byte(p), 0o644)
		}
		for range 50 {
			if err := os.Remove(g.dir); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		g.t.Logf("could not remove %s", g.dir)
	})
}

// leaderChanges is the most leader changes any server's etcd has seen.
func leaderChanges(t *testing.T, servers []*harness.Node) int {
	t.Helper()
	most := 0
	for _, n := range servers {
		v := etcdMetric(t, n, "etcd_server_leader_changes_seen_total")
		most = max(most, int(v))
	}
	return most
}

// fsyncStats are a server's WAL fsync histogram's sum (seconds) and count.
type fsyncStats struct {
	sum   float64
	count int
}

func walFsync(t *testing.T, n *harness.Node) fsyncStats {
	t.Helper()
	return fsyncStats{
		sum:   etcdMetric(t, n, "etcd_disk_wal_fsync_duration_seconds_sum"),
		count: int(etcdMetric(t, n, "etcd_disk_wal_fsync_duration_seconds_count")),
	}
}

// etcdMetric reads one unlabelled metric from n's etcd (loopback metrics).
func etcdMetric(t *testing.T, n *harness.Node, name string) float64 {
	t.Helper()
	out, err := n.Exec("curl", "-sS", "--fail", "-m", "10", "http://127.0.0.1:2381/metrics")
	if err != nil {
		t.Fatalf("%s: etcd metrics: %v", n.Name(), err)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatalf("%s: %s", n.Name(), line)
			}
			return v
		}
	}
	t.Fatalf("%s: no metric %s", n.Name(), name)
	return 0
}
