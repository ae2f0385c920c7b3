package flannel

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flannel-io/flannel/pkg/subnet"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestParseBackend(t *testing.T) {
	for in, want := range map[string]Backend{"vxlan": VXLAN, "host-gw": HostGW, "none": None, "VXLAN": VXLAN, " host-gw ": HostGW} {
		if got, err := ParseBackend(in); err != nil || got != want {
			t.Errorf("ParseBackend(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "hostgw", "wireguard", "udp"} {
		if _, err := ParseBackend(in); err == nil || !strings.Contains(err.Error(), "want vxlan, host-gw or none") {
			t.Errorf("ParseBackend(%q): err = %v", in, err)
		}
	}
}

func TestNetConf(t *testing.T) {
	for _, b := range []Backend{VXLAN, HostGW} {
		raw, err := NetConf(b, "10.42.0.0/16")
		if err != nil {
			t.Fatal(err)
		}
		// flannel's own parser reads it as flanneld would.
		c, err := subnet.ParseConfig(string(raw))
		if err != nil {
			t.Fatalf("%s: %v\n%s", b, err, raw)
		}
		if c.BackendType != string(b) || c.Network.String() != "10.42.0.0/16" || !c.EnableIPv4 || c.EnableIPv6 || c.EnableNFTables {
			t.Errorf("%s: parsed %+v", b, c)
		}
	}
	for _, tc := range []struct {
		b    Backend
		cidr string
		want string
	}{
		{VXLAN, "bogus", `"bogus"`},
		{VXLAN, "fd00:42::/56", "IPv4 only"},
		{None, "10.42.0.0/16", `"none"`},
	} {
		if _, err := NetConf(tc.b, tc.cidr); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NetConf(%s, %s): err = %v, want %q", tc.b, tc.cidr, err, tc.want)
		}
	}
}

func TestRenderCNIConfig(t *testing.T) {
	_, subnet, _ := net.ParseCIDR("10.42.3.0/24")
	raw, err := RenderCNIConfig(CNIConfig{Bridge: "cni0", Subnet: subnet, MTU: 1450})
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		CNIVersion string `json:"cniVersion"`
		Plugins    []struct {
			Type      string `json:"type"`
			Bridge    string `json:"bridge"`
			MTU       int    `json:"mtu"`
			IPMasq    *bool  `json:"ipMasq"`
			IsGateway bool   `json:"isGateway"`
			IPAM      struct {
				Type   string                `json:"type"`
				Ranges [][]map[string]string `json:"ranges"`
				Routes []map[string]string   `json:"routes"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.Plugins) != 2 || conf.Plugins[0].Type != "bridge" || conf.Plugins[1].Type != "portmap" {
		t.Fatalf("plugins = %+v", conf.Plugins)
	}
	b := conf.Plugins[0]
	if b.Bridge != "cni0" || b.MTU != 1450 || !b.IsGateway || b.IPAM.Type != "host-local" ||
		b.IPAM.Ranges[0][0]["subnet"] != "10.42.3.0/24" || b.IPAM.Routes[0]["dst"] != "0.0.0.0/0" {
		t.Errorf("bridge plugin = %+v", b)
	}
	// flannel masquerades; the bridge must not (it would NAT pod-to-pod traffic across nodes).
	if b.IPMasq == nil || *b.IPMasq {
		t.Errorf("ipMasq = %v, want false", b.IPMasq)
	}

	raw, _ = RenderCNIConfig(CNIConfig{Bridge: "cni0", Subnet: subnet})
	if strings.Contains(string(raw), `"mtu"`) {
		t.Errorf("MTU 0 rendered an mtu:\n%s", raw)
	}
	if _, err := RenderCNIConfig(CNIConfig{Subnet: subnet}); err == nil {
		t.Error("no error for an empty bridge name")
	}
	if _, err := RenderCNIConfig(CNIConfig{Bridge: "cni0"}); err == nil {
		t.Error("no error for a missing subnet")
	}
}

func TestWriteCNIConfigKeepsIdenticalFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net.d")
	_, subnet, _ := net.ParseCIDR("10.42.3.0/24")
	c := CNIConfig{Bridge: "cni0", Subnet: subnet, MTU: 1350}
	if err := WriteCNIConfig(dir, c); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, CNIConfFile)
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if err := WriteCNIConfig(dir, c); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); !st.ModTime().Equal(old) {
		t.Error("an identical config was rewritten")
	}
	c.MTU = 1450
	if err := WriteCNIConfig(dir, c); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(path); !strings.Contains(string(raw), `"mtu": 1450`) {
		t.Errorf("changed config not written:\n%s", raw)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

func TestExternalInterfaceErrors(t *testing.T) {
	cases := []struct {
		name   string
		iface  string
		nodeIP net.IP
		want   []string // the first is the flag the error starts with
	}{
		{"missing interface", "kedge-nope0", net.ParseIP("192.0.2.10"), []string{"--flannel-iface kedge-nope0", "no such network interface"}},
		{"node IP on no interface", "", net.ParseIP("203.0.113.254"), []string{"--node-ip 203.0.113.254", "set --flannel-iface"}},
		{"IPv6 node IP", "", net.ParseIP("2001:db8::1"), []string{"--node-ip 2001:db8::1", "IPv4"}},
		// flannel uses only global or link-local unicast addresses of a named interface.
		{"interface without a usable address", "lo", net.ParseIP("192.0.2.10"), []string{"--flannel-iface lo", "IPv4 address"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ExternalInterface(tc.iface, tc.nodeIP)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), tc.want[0]) {
				t.Errorf("error %q does not start with %q", err, tc.want[0])
			}
			for _, w := range tc.want[1:] {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestExternalInterfaceLoopback(t *testing.T) {
	// The loopback interface exists everywhere; looked up by the node IP it
	// holds, with or without its name, it yields that address.
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip("no interface named lo")
	}
	for _, tc := range []struct{ iface, nodeIP string }{{"", "127.0.0.1"}, {"lo", "127.0.0.1"}} {
		ext, err := ExternalInterface(tc.iface, net.ParseIP(tc.nodeIP))
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		if ext.Iface.Index != lo.Index || !ext.IfaceAddr.Equal(net.ParseIP("127.0.0.1")) || !ext.ExtAddr.Equal(ext.IfaceAddr) {
			t.Errorf("%+v: got %s %s ext %s", tc, ext.IfaceName, ext.IfaceAddr, ext.ExtAddr)
		}
	}
}

func TestReadSubnetFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subnet.env")
	network, sn := readSubnetFile(path)
	if !network.Empty() || !sn.Empty() {
		t.Errorf("missing file: %s %s", network, sn)
	}
	// As flannel's subnet.WriteSubnetFile writes it.
	data := "FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET=10.42.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	network, sn = readSubnetFile(path)
	if network.String() != "10.42.0.0/16" || sn.String() != "10.42.3.0/24" {
		t.Errorf("got network %s subnet %s", network, sn)
	}
}

func TestWaitNode(t *testing.T) {
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	update := func(change func(*corev1.Node)) {
		node, _ := client.CoreV1().Nodes().Get(t.Context(), "n1", metav1.GetOptions{})
		change(node)
		_, _ = client.CoreV1().Nodes().Update(t.Context(), node, metav1.UpdateOptions{})
	}
	done := make(chan error, 1)
	go func() { done <- waitNode(t.Context(), client, "n1") }()
	for _, change := range []func(*corev1.Node){
		func(n *corev1.Node) { n.Spec.PodCIDR = "10.42.9.0/24" },
		func(n *corev1.Node) { n.Annotations = map[string]string{"node.alpha.kubernetes.io/ttl": "0"} },
	} {
		select {
		case err := <-done:
			t.Fatalf("waitNode returned before the node was complete: %v", err)
		case <-time.After(700 * time.Millisecond):
		}
		update(change)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitNode did not return")
	}

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := waitNode(ctx, client, "missing"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("err = %v", err)
	}
}
