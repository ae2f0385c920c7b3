package servicelb

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

func TestParsePools(t *testing.T) {
	pools, err := ParsePools([]string{"default=192.0.2.240-192.0.2.250", "lan=198.51.100.0/29", "v6=2001:db8::10-2001:db8::1f"})
	if err != nil {
		t.Fatal(err)
	}
	if got := pools[0].Size(); got != 11 {
		t.Errorf("range size = %d, want 11", got)
	}
	// A /29 leaves out its network and broadcast addresses: .1 to .6.
	if pools[1].First.String() != "198.51.100.1" || pools[1].Last.String() != "198.51.100.6" {
		t.Errorf("CIDR pool = %s", pools[1])
	}
	if !pools[2].Contains(netip.MustParseAddr("2001:db8::1a")) || pools[2].Contains(netip.MustParseAddr("192.0.2.241")) {
		t.Error("Contains across families")
	}
	for _, bad := range []struct {
		v    []string
		want string
	}{
		{[]string{"nopool"}, "want NAME=FIRST-LAST"},
		{[]string{"Bad_Name=192.0.2.1-192.0.2.2"}, "name"},
		{[]string{"a=192.0.2.9-192.0.2.1"}, "FIRST ≤ LAST"},
		{[]string{"a=192.0.2.1-2001:db8::1"}, "one IP family"},
		{[]string{"a=bogus"}, "not a range"},
		{[]string{"a=192.0.2.0/28", "a=198.51.100.0/28"}, "given twice for one IP family"},
		{[]string{"a=2001:db8::/120", "a=2001:db8:1::/120"}, "given twice for one IP family"},
		{[]string{"a=2001:db8::/120", "b=2001:db8::80-2001:db8::1:0"}, "overlaps pool a"},
		{[]string{"a=2001:db8::10-2001:db8::1"}, "FIRST ≤ LAST"},
		{[]string{"a=192.0.2.0/28", "b=192.0.2.5-192.0.2.30"}, "overlaps pool a"},
	} {
		if _, err := ParsePools(bad.v); err == nil || !strings.Contains(err.Error(), bad.want) || !strings.Contains(err.Error(), "--service-lb-pool") {
			t.Errorf("ParsePools(%v) = %v, want an error with %q", bad.v, err, bad.want)
		}
	}
	_, svcCIDR, _ := net.ParseCIDR("10.43.0.0/16")
	p, _ := ParsePools([]string{"a=10.43.200.1-10.43.200.9"})
	if err := CheckOverlap(p, "--service-cidr", svcCIDR); err == nil || !strings.Contains(err.Error(), "--service-cidr 10.43.0.0/16") {
		t.Errorf("overlap with the service CIDR: %v", err)
	}
}

// TestParsePoolsIPv6: IPv6 ranges and CIDRs parse, one pool name may have
// a range of each family, and the overlap checks see IPv6 cluster and
// service CIDRs.
func TestParsePoolsIPv6(t *testing.T) {
	pools, err := ParsePools([]string{"default=192.0.2.240-192.0.2.250", "default=2001:db8::10-2001:db8::20", "v6=2001:db8:1::/120"})
	if err != nil {
		t.Fatal(err)
	}
	if got := pools[1].Size(); got != 17 {
		t.Errorf("IPv6 range size = %d, want 17", got)
	}
	// A /120 leaves out its subnet-router anycast address (::0) only.
	if pools[2].String() != "v6=2001:db8:1::1-2001:db8:1::ff" || pools[2].Size() != 255 {
		t.Errorf("IPv6 CIDR pool = %s (%d)", pools[2], pools[2].Size())
	}
	if big, _ := ParsePools([]string{"wide=2001:db8::/64"}); big[0].Size() != 1<<32 {
		t.Errorf("a /64 counts %d addresses, want the cap 1<<32", big[0].Size())
	}
	for _, c := range []struct{ flag, cidr string }{
		{"--service-cidr", "2001:db8::/112"},
		{"--cluster-cidr", "2001:db8:1::/56"},
	} {
		_, n, _ := net.ParseCIDR(c.cidr)
		if err := CheckOverlap(pools, c.flag, n); err == nil || !strings.Contains(err.Error(), c.flag+" "+c.cidr) {
			t.Errorf("overlap with %s %s: %v", c.flag, c.cidr, err)
		}
	}
	_, other, _ := net.ParseCIDR("fd00:10:43::/112")
	if err := CheckOverlap(pools, "--service-cidr", other); err != nil {
		t.Errorf("no overlap: %v", err)
	}
}

// TestAllocateDualStack: a Service gets one address per family of its
// spec.ipFamilies that its pool has a range of.
func TestAllocateDualStack(t *testing.T) {
	pools, _ := ParsePools([]string{"default=192.0.2.10-192.0.2.11", "default=2001:db8::10-2001:db8::11", "v6=2001:db8:1::1-2001:db8:1::2"})
	fams := func(f ...corev1.IPFamily) func(*corev1.Service) {
		return func(s *corev1.Service) { s.Spec.IPFamilies = f }
	}
	used := map[netip.Addr]string{netip.MustParseAddr("2001:db8::10"): "default/a"}
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Service)
		want   string
	}{
		{"dual stack, IPv6 first", fams(corev1.IPv6Protocol, corev1.IPv4Protocol), "[2001:db8::11 192.0.2.10]"},
		{"IPv4 only", fams(corev1.IPv4Protocol), "[192.0.2.10]"},
		{"IPv6 only", fams(corev1.IPv6Protocol), "[2001:db8::11]"},
		{"dual stack from an IPv6-only pool", func(s *corev1.Service) {
			fams(corev1.IPv4Protocol, corev1.IPv6Protocol)(s)
			s.Annotations = map[string]string{PoolAnnotation: "v6"}
		}, "[2001:db8:1::1]"},
		{"requested IPv6 address", func(s *corev1.Service) {
			fams(corev1.IPv4Protocol, corev1.IPv6Protocol)(s)
			s.Spec.LoadBalancerIP = "2001:db8::11"
		}, "[192.0.2.10 2001:db8::11]"},
		{"held addresses kept", func(s *corev1.Service) {
			fams(corev1.IPv4Protocol, corev1.IPv6Protocol)(s)
			s.Annotations = map[string]string{AssignedAnnotation: "default"}
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "2001:db8::11"}, {IP: "192.0.2.11"}}
		}, "[192.0.2.11 2001:db8::11]"},
	} {
		_, ips, err := allocate(svc("b", tc.mutate), pools, used, nil)
		if err != nil || fmt.Sprint(ips) != tc.want {
			t.Errorf("%s: %v %v, want %s", tc.name, ips, err, tc.want)
		}
	}
	probed := func(a netip.Addr) bool { return a.String() == "2001:db8:1::1" }
	if _, ips, err := allocate(svc("c", func(s *corev1.Service) {
		fams(corev1.IPv6Protocol)(s)
		s.Annotations = map[string]string{PoolAnnotation: "v6"}
	}), pools, used, probed); err != nil || fmt.Sprint(ips) != "[2001:db8:1::2]" {
		t.Errorf("an IPv6 address answering a Neighbor Solicitation is skipped: %v %v", ips, err)
	}
	for _, tc := range []struct {
		mutate func(*corev1.Service)
		want   string
	}{
		{func(s *corev1.Service) {
			fams(corev1.IPv4Protocol)(s)
			s.Annotations = map[string]string{PoolAnnotation: "v6"}
		}, "pool v6 has no range of the Service's spec.ipFamilies [IPv4]"},
		{func(s *corev1.Service) { fams(corev1.IPv4Protocol)(s); s.Spec.LoadBalancerIP = "2001:db8::11" }, "not of the Service's spec.ipFamilies"},
		{func(s *corev1.Service) {
			fams(corev1.IPv6Protocol)(s)
			s.Spec.LoadBalancerIP = "2001:db8::10"
		}, "already the address of Service default/a"},
		{func(s *corev1.Service) {
			fams(corev1.IPv6Protocol)(s)
			s.Annotations = map[string]string{PoolAnnotation: "v6"}
		}, "every address is a Service's or answers a Neighbor Solicitation"},
	} {
		u := used
		if strings.Contains(tc.want, "every address") {
			u = map[netip.Addr]string{netip.MustParseAddr("2001:db8:1::2"): "default/x"}
		}
		if _, _, err := allocate(svc("g", tc.mutate), pools, u, probed); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
	}
}

func svc(name string, mutate func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
	if mutate != nil {
		mutate(s)
	}
	return s
}

func TestAllocate(t *testing.T) {
	pools, _ := ParsePools([]string{"lan=192.0.2.10-192.0.2.12", "default=192.0.2.20-192.0.2.21"})
	used := map[netip.Addr]string{netip.MustParseAddr("192.0.2.20"): "default/a"}
	name, ips, err := allocate(svc("b", nil), pools, used, nil)
	if err != nil || name != "default" || fmt.Sprint(ips) != "[192.0.2.21]" {
		t.Errorf("default pool: %s %s %v", name, ips, err)
	}
	anno := func(s *corev1.Service) { s.Annotations = map[string]string{PoolAnnotation: "lan"} }
	probed := func(a netip.Addr) bool { return a.String() == "192.0.2.10" }
	if _, ip, err := allocate(svc("c", anno), pools, used, probed); err != nil || fmt.Sprint(ip) != "[192.0.2.11]" {
		t.Errorf("annotated pool, .10 answering ARP: %s %v", ip, err)
	}
	req := func(s *corev1.Service) { anno(s); s.Spec.LoadBalancerIP = "192.0.2.12" }
	if _, ip, err := allocate(svc("d", req), pools, used, nil); err != nil || fmt.Sprint(ip) != "[192.0.2.12]" {
		t.Errorf("requested address: %s %v", ip, err)
	}
	held := func(s *corev1.Service) {
		s.Annotations = map[string]string{AssignedAnnotation: "default"}
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.21"}}
	}
	if _, ip, err := allocate(svc("e", held), pools, used, nil); err != nil || fmt.Sprint(ip) != "[192.0.2.21]" {
		t.Errorf("a held address is kept: %s %v", ip, err)
	}
	used[netip.MustParseAddr("192.0.2.21")] = "default/b"
	if _, _, err := allocate(svc("f", nil), pools, used, nil); err == nil || !strings.Contains(err.Error(), "exhausted") {
		t.Errorf("exhausted pool: %v", err)
	}
	for _, tc := range []struct {
		mutate func(*corev1.Service)
		want   string
	}{
		{func(s *corev1.Service) { s.Annotations = map[string]string{PoolAnnotation: "nope"} }, "no such pool"},
		{func(s *corev1.Service) { s.Spec.LoadBalancerIP = "192.0.2.99" }, "not in pool"},
		{func(s *corev1.Service) { s.Spec.LoadBalancerIP = "192.0.2.20" }, "already the address of Service default/a"},
	} {
		if _, _, err := allocate(svc("g", tc.mutate), pools, used, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
	}
}

func TestRank(t *testing.T) {
	nodes := []string{"a", "b", "c", "d"}
	ip := netip.MustParseAddr("192.0.2.10")
	first := rank(ip, nodes)
	if again := rank(ip, []string{"d", "c", "b", "a"}); strings.Join(first, ",") != strings.Join(again, ",") {
		t.Errorf("the order depends on the input order: %v vs %v", first, again)
	}
	leaders := map[string]bool{}
	for i := 0; i < 32; i++ {
		leaders[rank(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), nodes)[0]] = true
	}
	if len(leaders) < 3 {
		t.Errorf("32 addresses are announced by only %d of 4 nodes", len(leaders))
	}
}

// TestController: the allocator gives a LoadBalancer Service an address
// from its pool, records it, and takes it back when the Service stops being
// a LoadBalancer; without pools a Service gets the nodes' addresses.
func TestController(t *testing.T) {
	pools, _ := ParsePools([]string{"default=192.0.2.240-192.0.2.241"})
	client := fake.NewClientset(svc("web", nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { _ = newAllocator(client, ControllerConfig{Pools: pools}, testLog(t)).run(ctx) }()
	wait := func(what string, ok func(*corev1.Service) bool) {
		t.Helper()
		for {
			s, err := client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
			if err == nil && ok(s) {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: %+v %+v", what, s.Annotations, s.Status)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	wait("address assigned", func(s *corev1.Service) bool {
		return s.Annotations[AssignedAnnotation] == "default" && len(s.Status.LoadBalancer.Ingress) == 1 && s.Status.LoadBalancer.Ingress[0].IP == "192.0.2.240"
	})
	s, _ := client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	s.Spec.Type = corev1.ServiceTypeClusterIP
	if _, err := client.CoreV1().Services("default").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("address released", func(s *corev1.Service) bool {
		return s.Annotations[AssignedAnnotation] == "" && len(s.Status.LoadBalancer.Ingress) == 0
	})
	cancel()

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.7"}}}}
	client = fake.NewClientset(svc("web", nil), node)
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { _ = newAllocator(client, ControllerConfig{}, testLog(t)).run(ctx) }()
	wait("node addresses without a pool", func(s *corev1.Service) bool {
		return len(s.Status.LoadBalancer.Ingress) == 1 && s.Status.LoadBalancer.Ingress[0].IP == "192.0.2.7"
	})
}

// TestControllerDualStack: through the controller, a dual-stack Service
// gets an address of each range of its pool, and an IPv6-only Service the
// IPv6 one that is left.
func TestControllerDualStack(t *testing.T) {
	pools, _ := ParsePools([]string{"default=192.0.2.240-192.0.2.241", "default=2001:db8::10-2001:db8::11"})
	dual := svc("dual", func(s *corev1.Service) {
		policy := corev1.IPFamilyPolicyPreferDualStack
		s.Spec.IPFamilyPolicy = &policy
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
	})
	v6 := svc("v6", func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} })
	client := fake.NewClientset(dual)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { _ = newAllocator(client, ControllerConfig{Pools: pools}, testLog(t)).run(ctx) }()
	wait := func(name, want string) {
		t.Helper()
		for {
			s, err := client.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
			var got []string
			if err == nil {
				for _, in := range s.Status.LoadBalancer.Ingress {
					got = append(got, in.IP)
				}
			}
			if strings.Join(got, ",") == want {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: ingress %v, want %s", name, got, want)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	wait("dual", "2001:db8::10,192.0.2.240")
	if _, err := client.CoreV1().Services("default").Create(ctx, v6, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("v6", "2001:db8::11")
}
