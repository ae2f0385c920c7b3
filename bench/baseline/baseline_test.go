package baseline

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	toml "github.com/pelletier/go-toml/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/kedge-io/kedge/pkg/hostinfo"
	"github.com/kedge-io/kedge/pkg/killall"
	"github.com/kedge-io/kedge/tests/testimage"
)

// setup is bench.Setup, copied here so that this package does not import
// the driver's.
type setup interface {
	Name() string
	Start(ctx context.Context) error
	ExecTime() time.Time
	Kubeconfig() string
	PIDs() ([]int, error)
	Stop(ctx context.Context) error
}

var (
	_ setup = (*Server)(nil)
	_ setup = (*Node)(nil)
)

// repo is the root of the kedge checkout this file is in.
func repo(t *testing.T) string {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Join(filepath.Dir(self), "..", "..")
}

func testServer(t *testing.T) (*Server, controlPlane, node, []spec) {
	t.Helper()
	s := NewServer(ServerConfig{
		Paths:   RepoPaths(repo(t)),
		DataDir: t.TempDir(),
		NodeOptions: NodeOptions{
			NodeName: "n1",
			NodeIP:   net.ParseIP("10.0.0.5"),
		},
	})
	cp, n, specs, err := s.prepare()
	if err != nil {
		t.Fatal(err)
	}
	return s, cp, n, specs
}

func TestServerRender(t *testing.T) {
	_, cp, n, specs := testServer(t)
	var names []string
	for _, sp := range specs {
		names = append(names, sp.name)
	}
	want := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
		"containerd", "kubelet", "flanneld", "kube-proxy", "coredns"}
	if !slices.Equal(names, want) {
		t.Fatalf("processes %v, want %v", names, want)
	}
	args := map[string][]string{}
	for _, sp := range specs {
		args[sp.name] = sp.args
	}
	for name, flag := range map[string]string{
		"kube-apiserver":          "--secure-port=6443",
		"kube-controller-manager": "--cluster-cidr=10.42.0.0/16",
		"kube-proxy":              "--hostname-override=n1",
		"kubelet":                 "--node-ip=10.0.0.5",
	} {
		if !slices.Contains(args[name], flag) {
			t.Errorf("%s: no %s in %v", name, flag, args[name])
		}
	}

	// Every kubeconfig and private key is 0600.
	err := filepath.Walk(filepath.Dir(cp.dir), func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		if strings.HasSuffix(path, ".kubeconfig") || strings.HasSuffix(path, ".key") {
			if info.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", path, info.Mode().Perm())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The kubelet configuration file is what kubelet.Render decided.
	raw, err := os.ReadFile(filepath.Join(n.etcDir(), "kubelet", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kc kubeletv1beta1.KubeletConfiguration
	if err := yaml.UnmarshalStrict(raw, &kc); err != nil {
		t.Fatal(err)
	}
	host := hostinfo.Detect()
	if kc.Kind != "KubeletConfiguration" || kc.APIVersion != "kubelet.config.k8s.io/v1beta1" {
		t.Errorf("kubelet config %s %s", kc.APIVersion, kc.Kind)
	}
	if kc.ContainerRuntimeEndpoint != "unix://"+n.containerdAddress() {
		t.Errorf("containerRuntimeEndpoint %q", kc.ContainerRuntimeEndpoint)
	}
	if host.CgroupV1 && (kc.FailCgroupV1 == nil || *kc.FailCgroupV1) {
		t.Errorf("cgroup v1 host: failCgroupV1 %v, want false", kc.FailCgroupV1)
	}
	if kc.CgroupDriver != host.CgroupDriver() || !slices.Equal(kc.ClusterDNS, []string{"10.43.0.10"}) {
		t.Errorf("cgroupDriver %q clusterDNS %v", kc.CgroupDriver, kc.ClusterDNS)
	}
	if kc.StaticPodPath != "" || kc.TLSCertFile != n.certs.KubeletServingCert {
		t.Errorf("staticPodPath %q tlsCertFile %q", kc.StaticPodPath, kc.TLSCertFile)
	}

	// containerd's TOML has kedge's CRI settings, the OOM adaptation included.
	raw, err = os.ReadFile(filepath.Join(n.etcDir(), "containerd", "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Version int            `toml:"version"`
		Root    string         `toml:"root"`
		Plugins map[string]any `toml:"plugins"`
	}
	if err := toml.Unmarshal(raw, &conf); err != nil {
		t.Fatal(err)
	}
	rt, _ := conf.Plugins["io.containerd.cri.v1.runtime"].(map[string]any)
	if conf.Root != n.containerdRoot() || rt["restrict_oom_score_adj"] != !host.CanRaiseOOMPriority {
		t.Errorf("containerd config: root %q restrict_oom_score_adj %v\n%s", conf.Root, rt["restrict_oom_score_adj"], raw)
	}
	// The containerd we run accepts it, if it is built.
	if bin := filepath.Join(RepoPaths(repo(t)).BinDir, "containerd"); fileExists(bin) {
		cmd := exec.Command(bin, "--config", filepath.Join(n.etcDir(), "containerd", "config.toml"), "config", "dump")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("containerd config dump: %v\n%s", err, out)
		}
	}

	// etcd's configuration file.
	raw, err = os.ReadFile(filepath.Join(cp.dir, "db", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ec map[string]any
	if err := yaml.Unmarshal(raw, &ec); err != nil {
		t.Fatal(err)
	}
	if ec["listen-client-urls"] != "https://127.0.0.1:2379,https://10.0.0.5:2379" || ec["name"] != "n1" {
		t.Errorf("etcd config:\n%s", raw)
	}
}

func TestNodeRenderFromServerCAs(t *testing.T) {
	_, cp, _, _ := testServer(t)
	nd := NewNode(NodeConfig{
		Paths:        RepoPaths(repo(t)),
		DataDir:      t.TempDir(),
		NodeOptions:  NodeOptions{NodeName: "n2", NodeIP: net.ParseIP("10.0.0.6")},
		ServerURL:    "https://10.0.0.5:6443",
		ServerTLSDir: cp.certs.Dir,
	})
	n, specs, err := nd.prepare()
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 5 || specs[0].name != "containerd" {
		t.Fatalf("node processes %v", specs)
	}
	raw, err := os.ReadFile(n.kubeletKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "server: https://10.0.0.5:6443") {
		t.Errorf("kubelet kubeconfig:\n%s", raw)
	}
}

func TestReadSubnetEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subnet.env")
	if n, _ := readSubnetEnv(path); n != nil {
		t.Fatal("subnet before the file exists")
	}
	os.WriteFile(path, []byte("FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET=10.42.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"), 0o644)
	n, mtu := readSubnetEnv(path)
	if n == nil || n.String() != "10.42.3.0/24" || mtu != 1450 {
		t.Fatalf("got %v %d", n, mtu)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestServerRuns starts the baseline server (root, bench/bin built), waits
// for the node and a pod of the test image, checks DNS through the kube-dns
// Service and stops, leaving nothing behind.
func TestServerRuns(t *testing.T) {
	paths := RepoPaths(repo(t))
	if err := paths.Check(); err != nil {
		t.Skipf("baseline not built: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "webapp.tar")
	if err := os.WriteFile(img, testimage.Build(t), 0o644); err != nil {
		t.Fatal(err)
	}
	s := NewServer(ServerConfig{Paths: paths, DataDir: filepath.Join(dir, "data"), NodeOptions: NodeOptions{Images: []string{img}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Stop(context.Background())
		}
		if t.Failed() {
			dumpLogs(t, filepath.Join(dir, "data", "logs"))
		}
	}()
	exec0 := s.ExecTime()
	c, err := client(s.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	err = poll(ctx, 200*time.Millisecond, func(ctx context.Context) (bool, error) {
		ok, _ := nodeReady(ctx, c, host) // the apiserver may not answer yet
		return ok, nil
	})
	if err != nil {
		t.Fatalf("node Ready: %v", err)
	}
	t.Logf("exec → node Ready: %s", time.Since(exec0).Round(time.Millisecond))

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: testimage.Name, ImagePullPolicy: corev1.PullNever,
		}}},
	}
	err = poll(ctx, time.Second, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
		return err == nil, nil // the default service account may not exist yet
	})
	if err != nil {
		t.Fatal(err)
	}
	var podIP string
	err = poll(ctx, 500*time.Millisecond, func(ctx context.Context) (bool, error) {
		p, err := c.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		podIP = p.Status.PodIP
		return p.Status.Phase == corev1.PodRunning && podIP != "", nil
	})
	if err != nil {
		t.Fatalf("pod Running: %v", err)
	}
	t.Logf("exec → pod Running: %s (pod IP %s)", time.Since(exec0).Round(time.Millisecond), podIP)

	// The pod answers over the pod network.
	err = poll(ctx, 500*time.Millisecond, func(ctx context.Context) (bool, error) {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + net.JoinHostPort(podIP, "8080"))
		if err != nil {
			return false, nil
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(body), "web"), nil
	})
	if err != nil {
		t.Errorf("pod over HTTP: %v", err)
	}
	// DNS through the kube-dns Service (kube-proxy to the node's CoreDNS).
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", net.JoinHostPort(DefaultClusterDNS, "53"))
	}}
	err = poll(ctx, 500*time.Millisecond, func(ctx context.Context) (bool, error) {
		addrs, err := r.LookupHost(ctx, "kubernetes.default.svc.cluster.local")
		return err == nil && slices.Contains(addrs, "10.43.0.1"), nil
	})
	if err != nil {
		t.Errorf("DNS through %s: %v", DefaultClusterDNS, err)
	}

	pids, _ := s.PIDs()
	t.Logf("processes: %v (%d with shims); restarts %v; RSS %d MiB", s.Processes(), len(pids), s.Restarts(), rssSum(pids)>>20)

	begin := time.Now()
	stopped = true
	if err := s.Stop(context.Background()); err != nil {
		t.Errorf("stop: %v", err)
	}
	t.Logf("stop took %s", time.Since(begin).Round(time.Millisecond))
	if raw, err := os.ReadFile(filepath.Join(dir, "data", "logs", "baseline.log")); err == nil && testing.Verbose() {
		t.Logf("baseline.log:\n%s", raw)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still running", pid)
		}
	}
	if left, _ := s.PIDs(); len(left) > 0 {
		t.Errorf("PIDs after Stop: %v", left)
	}
	if _, err := net.InterfaceByName("cni0"); err == nil {
		t.Error("cni0 still there")
	}
	if _, err := net.InterfaceByName("flannel.1"); err == nil {
		t.Error("flannel.1 still there")
	}
	if out, err := exec.Command("iptables-save").Output(); err == nil && killall.FilterRules(string(out)) != string(out) {
		t.Errorf("KUBE-/CNI-/FLANNEL iptables rules left:\n%s", out)
	}
}

// rssSum adds up the resident memory of pids, in bytes.
func rssSum(pids []int) int64 {
	var sum int64
	for _, pid := range pids {
		raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				sum += kb << 10
			}
		}
	}
	return sum
}

// dumpLogs prints the tail of every process log.
func dumpLogs(t *testing.T, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		if len(raw) > 3000 {
			raw = raw[len(raw)-3000:]
		}
		t.Logf("--- %s ---\n%s", filepath.Base(f), raw)
	}
}

// TestNodeJoinsKedgeServer runs a baseline Node against `kedge server
// --disable-agent` (root, bench/bin built, KEDGE_BIN set): the node joins
// with certificates from the server's CAs and becomes Ready.
func TestNodeJoinsKedgeServer(t *testing.T) {
	paths := RepoPaths(repo(t))
	if err := paths.Check(); err != nil {
		t.Skipf("baseline not built: %v", err)
	}
	kedge := os.Getenv("KEDGE_BIN")
	if kedge == "" || os.Geteuid() != 0 {
		t.Skip("needs root and KEDGE_BIN (a kedge binary)")
	}
	dir := t.TempDir()
	serverDir := filepath.Join(dir, "kedge")
	logf, err := os.Create(filepath.Join(dir, "kedge.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	srv := exec.Command(kedge, "server", "--disable-agent", "--data-dir", serverDir,
		"--write-kubeconfig", filepath.Join(dir, "kedge.yaml"))
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		srv.Process.Signal(os.Interrupt)
		srv.Wait()
		if t.Failed() {
			raw, _ := os.ReadFile(logf.Name())
			if len(raw) > 3000 {
				raw = raw[len(raw)-3000:]
			}
			t.Logf("kedge.log:\n%s", raw)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	admin := filepath.Join(serverDir, "server", "cred", "admin.kubeconfig")
	if err := poll(ctx, 200*time.Millisecond, func(context.Context) (bool, error) { return fileExists(admin), nil }); err != nil {
		t.Fatal(err)
	}
	if err := waitAPIServer(ctx, admin); err != nil {
		t.Fatal(err)
	}
	ip := hostinfo.DefaultNodeIP()
	n := NewNode(NodeConfig{
		Paths:           paths,
		DataDir:         filepath.Join(dir, "node"),
		ServerURL:       "https://" + net.JoinHostPort(ip.String(), "6443"),
		ServerTLSDir:    filepath.Join(serverDir, "server", "tls"),
		AdminKubeconfig: admin,
	})
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			n.Stop(context.Background())
		}
		if t.Failed() {
			dumpLogs(t, filepath.Join(dir, "node", "logs"))
		}
	}()
	c, err := client(n.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	err = poll(ctx, 200*time.Millisecond, func(ctx context.Context) (bool, error) {
		ok, _ := nodeReady(ctx, c, host)
		return ok, nil
	})
	if err != nil {
		t.Fatalf("node Ready: %v", err)
	}
	pids, _ := n.PIDs()
	t.Logf("exec → node Ready: %s; processes %v; RSS %d MiB", time.Since(n.ExecTime()).Round(time.Millisecond),
		n.Processes(), rssSum(pids)>>20)
	stopped = true
	if err := n.Stop(context.Background()); err != nil {
		t.Errorf("stop: %v", err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still running", pid)
		}
	}
	if !alive(srv.Process.Pid) {
		t.Error("the kedge server stopped with the node")
	}
	if _, err := net.InterfaceByName("cni0"); err == nil {
		t.Error("cni0 still there")
	}
}

// alive says whether pid runs (not a zombie).
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z"
}
