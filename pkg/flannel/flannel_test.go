package flannel

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// netnsEnv tells the child process which test to run in its new network
// namespace.
const netnsEnv = "KEDGE_FLANNEL_TEST_NETNS"

// inNewNetns runs the calling test again in a child process in a new network
// namespace, and reports whether it is that child (which then runs the test
// body). A whole process, not one locked thread, must be in the namespace:
// flannel works from many goroutines. The namespace, with flannel.1, its
// routes and its iptables rules, goes away when the child exits.
func inNewNetns(t *testing.T) bool {
	if os.Getenv(netnsEnv) == t.Name() {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs flannel in a new network namespace")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.timeout=3m")
	cmd.Env = append(os.Environ(), netnsEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	if err != nil || testing.Verbose() {
		t.Logf("child process in a new network namespace:\n%s", out)
	}
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	return false
}

// The test network: this node's uplink, and a peer node on the same segment.
var (
	testNodeIP = net.IPv4(198, 51, 100, 10)
	testPeerIP = net.IPv4(198, 51, 100, 11)
)

const (
	uplink       = "ext0"
	uplinkMTU    = 1400
	testPodCIDR  = "10.42.7.0/24"
	testPeerCIDR = "10.42.8.0/24"
	testPeerMAC  = "aa:bb:cc:dd:ee:02"
)

// setupUplink brings up lo and an uplink holding testNodeIP.
func setupUplink(t *testing.T) netlink.Link {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	// A veth pair: the dummy driver may be missing, veth is there wherever
	// containers run.
	link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: uplink, MTU: uplinkMTU}, PeerName: uplink + "-peer"}
	if err := netlink.LinkAdd(link); err != nil {
		t.Fatal(err)
	}
	if peer, err := netlink.LinkByName(uplink + "-peer"); err != nil {
		t.Fatal(err)
	} else if err := netlink.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: testNodeIP, Mask: net.CIDRMask(24, 32)}}
	if err := netlink.AddrAdd(link, addr); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(uplink)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// ownNode is node n1 as the kubelet registered it and the controller-manager
// gave it a pod CIDR.
func ownNode() *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: map[string]string{"volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
		Spec:       corev1.NodeSpec{PodCIDR: testPodCIDR, PodCIDRs: []string{testPodCIDR}},
	}
}

// peerNode is another node as its flannel left it.
func peerNode(name, cidr string, ip net.IP, b Backend, data string) *corev1.Node {
	p := AnnotationPrefix + "/"
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{
			p + "kube-subnet-manager": "true",
			p + "backend-type":        string(b),
			p + "backend-data":        data,
			p + "public-ip":           ip.String(),
		}},
		Spec: corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
	}
}

// runFlannel starts the component for node n1 against the fake API and
// waits until it is ready.
func runFlannel(t *testing.T, client *fake.Clientset, b Backend) (*Flannel, Config) {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{
		NodeName:    "n1",
		NodeIP:      testNodeIP,
		Backend:     b,
		ClusterCIDR: "10.42.0.0/16",
		Kubeconfig:  serveFakeAPI(t, client),
		Dir:         filepath.Join(dir, "flannel"),
		CNIConfDir:  filepath.Join(dir, "net.d"),
		Log:         slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}
	f := New(cfg)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() { ready <- f.Ready(ctx) }()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case err := <-f.Err():
		t.Fatalf("flannel failed: %v", err)
	}
	return f, cfg
}

func stopFlannel(t *testing.T, f *Flannel) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

// eventually polls check until it returns nil, or fails the test after 20 s.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkAnnotations checks what flannel published on its own Node.
func checkAnnotations(t *testing.T, client *fake.Clientset, b Backend, backendData string) {
	t.Helper()
	node, err := client.CoreV1().Nodes().Get(t.Context(), "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := AnnotationPrefix + "/"
	want := map[string]string{
		p + "kube-subnet-manager": "true",
		p + "backend-type":        string(b),
		p + "public-ip":           testNodeIP.String(),
		p + "backend-data":        backendData,
	}
	for k, v := range want {
		if got := node.Annotations[k]; got != v {
			t.Errorf("annotation %s = %q, want %q", k, got, v)
		}
	}
	eventually(t, "NetworkUnavailable=False", func() error {
		node, _ := client.CoreV1().Nodes().Get(t.Context(), "n1", metav1.GetOptions{})
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionFalse {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", node.Status.Conditions)
	})
}

// checkCNIConfig checks the pod network configuration containerd will use.
func checkCNIConfig(t *testing.T, cfg Config, mtu int) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(cfg.CNIConfDir, CNIConfFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"subnet": "` + testPodCIDR + `"`, fmt.Sprintf(`"mtu": %d`, mtu), `"ipMasq": false`, `"bridge": "cni0"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("CNI config lacks %s:\n%s", want, raw)
		}
	}
	env, err := os.ReadFile(filepath.Join(cfg.Dir, "subnet.env"))
	if err != nil || !strings.Contains(string(env), "FLANNEL_SUBNET=10.42.7.1/24") || !strings.Contains(string(env), fmt.Sprintf("FLANNEL_MTU=%d", mtu)) {
		t.Errorf("subnet.env: %v\n%s", err, env)
	}
}

// checkRoute waits for a route to cidr through link, via gw.
func checkRoute(t *testing.T, cidr string, link netlink.Link, gw net.IP) {
	t.Helper()
	_, dst, _ := net.ParseCIDR(cidr)
	eventually(t, "route to "+cidr, func() error {
		routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: dst}, netlink.RT_FILTER_DST)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.LinkIndex == link.Attrs().Index && r.Gw.Equal(gw) {
				return nil
			}
		}
		return fmt.Errorf("routes %v", routes)
	})
}

// checkIPTables checks flannel's masquerade and forward rules.
func checkIPTables(t *testing.T) {
	t.Helper()
	eventually(t, "iptables rules", func() error {
		for _, c := range []struct {
			args []string
			want []string
		}{
			{[]string{"-t", "nat", "-S", "POSTROUTING"}, []string{"-j FLANNEL-POSTRTG"}},
			{[]string{"-t", "nat", "-S", "FLANNEL-POSTRTG"}, []string{
				"-s " + testPodCIDR + " -d 10.42.0.0/16 -m comment --comment \"flanneld masq\" -j RETURN",
				"-s 10.42.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE",
			}},
			{[]string{"-t", "filter", "-S", "FLANNEL-FWD"}, []string{"-s 10.42.0.0/16", "-d 10.42.0.0/16"}},
		} {
			out, err := exec.Command("iptables", c.args...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("iptables %v: %v: %s", c.args, err, out)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					return fmt.Errorf("iptables %v lacks %q:\n%s", c.args, w, out)
				}
			}
		}
		return nil
	})
}

func TestVXLAN(t *testing.T) {
	if !inNewNetns(t) {
		return
	}
	ext := setupUplink(t)
	peerData := `{"VNI":1,"VtepMAC":"` + testPeerMAC + `"}`
	client := fake.NewClientset(
		ownNode(),
		peerNode("n2", testPeerCIDR, testPeerIP, VXLAN, peerData),
	)
	f, cfg := runFlannel(t, client, VXLAN)

	// flannel.1: VNI 1 over the uplink, MTU = uplink MTU − 50, up.
	link, err := netlink.LinkByName("flannel.1")
	if err != nil {
		t.Fatal(err)
	}
	vx, ok := link.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("flannel.1 is a %s, want vxlan", link.Type())
	}
	if vx.MTU != uplinkMTU-50 || vx.VxlanId != 1 || vx.VtepDevIndex != ext.Attrs().Index || !vx.SrcAddr.Equal(testNodeIP) || vx.Flags&net.FlagUp == 0 {
		t.Errorf("flannel.1: mtu %d vni %d vtep dev %d src %s flags %v", vx.MTU, vx.VxlanId, vx.VtepDevIndex, vx.SrcAddr, vx.Flags)
	}
	t.Logf("flannel.1: mtu %d vni %d dev %s local %s mac %s", vx.MTU, vx.VxlanId, uplink, vx.SrcAddr, vx.HardwareAddr)

	// The annotations carry flannel.1's MAC, so that other nodes can reach it.
	data, _ := json.Marshal(map[string]any{"VNI": 1, "VtepMAC": vx.HardwareAddr.String()})
	checkAnnotations(t, client, VXLAN, string(data))
	checkCNIConfig(t, cfg, uplinkMTU-50)
	checkIPTables(t)

	// A peer known at start (from the list) and one that joins later (from
	// the watch) are routed through flannel.1, their VTEPs in the FDB.
	checkRoute(t, testPeerCIDR, link, net.ParseIP("10.42.8.0"))
	late := peerNode("n3", "10.42.9.0/24", net.IPv4(198, 51, 100, 12), VXLAN, `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:03"}`)
	if _, err := client.CoreV1().Nodes().Create(t.Context(), late, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	checkRoute(t, "10.42.9.0/24", link, net.ParseIP("10.42.9.0"))
	eventually(t, "FDB entries of the peers' VTEPs", func() error {
		neighs, err := netlink.NeighList(link.Attrs().Index, syscall.AF_BRIDGE)
		if err != nil {
			return err
		}
		found := map[string]string{}
		for _, n := range neighs {
			found[n.HardwareAddr.String()] = n.IP.String()
		}
		if found[testPeerMAC] != testPeerIP.String() || found["aa:bb:cc:dd:ee:03"] != "198.51.100.12" {
			return fmt.Errorf("fdb %v", found)
		}
		return nil
	})

	// Stop leaves the device for the running pods.
	stopFlannel(t, f)
	if _, err := netlink.LinkByName("flannel.1"); err != nil {
		t.Errorf("flannel.1 gone after Stop: %v", err)
	}
}

func TestHostGW(t *testing.T) {
	if !inNewNetns(t) {
		return
	}
	ext := setupUplink(t)
	client := fake.NewClientset(
		ownNode(),
		peerNode("n2", testPeerCIDR, testPeerIP, HostGW, "null"),
	)
	f, cfg := runFlannel(t, client, HostGW)

	if _, err := netlink.LinkByName("flannel.1"); err == nil {
		t.Error("host-gw created flannel.1")
	}
	checkAnnotations(t, client, HostGW, "null")
	checkCNIConfig(t, cfg, uplinkMTU) // no encapsulation: the uplink's MTU
	checkIPTables(t)
	checkRoute(t, testPeerCIDR, ext, testPeerIP)

	stopFlannel(t, f)
	_, dst, _ := net.ParseCIDR(testPeerCIDR)
	if routes, _ := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: dst}, netlink.RT_FILTER_DST); len(routes) == 0 {
		t.Error("route to the peer gone after Stop")
	}
}
