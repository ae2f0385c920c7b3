package servicelb

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netns"
	"golang.org/x/net/ipv6"
)

// segment is an Ethernet segment of network namespaces: a bridge in its
// own namespace and, per host, a namespace whose eth0 is a veth port of
// the bridge, with 192.0.2.N/24 and 2001:db8::N/64.
type segment struct {
	t      *testing.T
	prefix string
	hosts  map[string]int // name → N
}

// newSegment builds the segment with hosts named in order (N = 1, 2, …);
// it skips where the machine cannot (not root, no ip(8), no network
// namespaces, no IPv6), and removes everything when the test ends.
func newSegment(t *testing.T, names ...string) *segment {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8) to build the network namespaces")
	}
	s := &segment{t: t, prefix: fmt.Sprintf("kslb%d", os.Getpid()%100000), hosts: map[string]int{}}
	lan := s.ns("lan")
	if out, err := exec.Command("ip", "netns", "add", lan).CombinedOutput(); err != nil {
		t.Skipf("no network namespaces: ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", lan).Run() })
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		t.Skip("the kernel has no IPv6 (/proc/sys/net/ipv6)")
	}
	s.run("ip", "-n", lan, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	s.run("ip", "-n", lan, "link", "set", "br0", "up")
	for i, name := range names {
		n := i + 1
		s.hosts[name] = n
		ns := s.ns(name)
		s.run("ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		// Addresses are usable at once: no duplicate address detection.
		s.run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.disable_ipv6=0")
		s.run("ip", "-n", lan, "link", "add", "name", "p"+name, "type", "veth", "peer", "name", "eth0", "netns", ns)
		s.run("ip", "-n", lan, "link", "set", "p"+name, "master", "br0", "up")
		s.run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0", "net.ipv6.neigh.eth0.delay_first_probe_time=1", "net.ipv4.neigh.eth0.delay_first_probe_time=1")
		s.run("ip", "-n", ns, "link", "set", "eth0", "up")
		s.run("ip", "-n", ns, "addr", "add", fmt.Sprintf("192.0.2.%d/24", n), "dev", "eth0")
		s.run("ip", "-n", ns, "addr", "add", fmt.Sprintf("2001:db8::%d/64", n), "dev", "eth0", "nodad")
	}
	for _, name := range names {
		s.eventually(name+"'s link-local address", func() error {
			out := s.run("ip", "-n", s.ns(name), "-6", "addr", "show", "dev", "eth0", "scope", "link")
			if !strings.Contains(out, "fe80::") || strings.Contains(out, "tentative") {
				return fmt.Errorf("%s", out)
			}
			return nil
		})
	}
	return s
}

func (s *segment) ns(name string) string { return s.prefix + "-" + name }

// run runs a command and fails the test if it fails.
func (s *segment) run(args ...string) string {
	s.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// nodeIP is host name's IPv4 address.
func (s *segment) nodeIP(name string) net.IP { return net.IPv4(192, 0, 2, byte(s.hosts[name])) }

// in runs f on a thread in host name's namespace and waits for it:
// sockets it opens stay in that namespace. The ndp package resolves
// the interface of an address's zone by name, in the namespace of the
// thread that writes: everything that sends NDP runs in its host's
// namespace, as kedge does in the node's.
func (s *segment) in(name string, f func()) {
	s.t.Helper()
	if err := <-s.goIn(name, f); err != nil {
		s.t.Fatalf("in %s: %v", name, err)
	}
}

// goIn runs f on a thread in host name's namespace in the background;
// the channel reports its end.
func (s *segment) goIn(name string, f func()) <-chan error {
	done := make(chan error, 1)
	go func() {
		var failure error
		defer func() { done <- failure }()
		runtime.LockOSThread()
		// The thread is not unlocked: it ends with the goroutine, so
		// it never returns to the pool in another namespace.
		h, err := netns.GetFromName(s.ns(name))
		if err != nil {
			failure = err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			failure = err
			return
		}
		defer func() {
			if r := recover(); r != nil {
				failure = fmt.Errorf("%v", r)
			}
		}()
		f()
	}()
	return done
}

// iface is eth0 of host name.
func (s *segment) iface(name string) *net.Interface {
	s.t.Helper()
	var ifi *net.Interface
	s.in(name, func() {
		var err error
		if ifi, err = interfaceOf(s.nodeIP(name)); err != nil {
			panic(err)
		}
	})
	return ifi
}

// neighbor is host name's neighbor table entry for ip ("" if none).
func (s *segment) neighbor(name string, ip netip.Addr) string {
	return strings.TrimSpace(s.run("ip", "-n", s.ns(name), "neigh", "show", "to", ip.String(), "dev", "eth0"))
}

// send makes host name's kernel send a UDP datagram to ip, resolving its
// link-layer address first.
func (s *segment) send(name string, ip netip.Addr) {
	s.in(name, func() {
		c, err := net.Dial("udp", net.JoinHostPort(ip.String(), "9"))
		if err != nil {
			panic(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte("hello"))
	})
}

func (s *segment) eventually(what string, f func() error) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wantNeighbor waits until host name's kernel has resolved ip to hw.
func (s *segment) wantNeighbor(name string, ip netip.Addr, hw net.HardwareAddr, states ...string) {
	s.t.Helper()
	s.eventually(fmt.Sprintf("%s resolves %s to %s", name, ip, hw), func() error {
		got := s.neighbor(name, ip)
		if !strings.Contains(got, "lladdr "+hw.String()+" ") {
			return fmt.Errorf("neighbor entry %q", got)
		}
		for _, st := range states {
			if strings.HasSuffix(got, st) {
				return nil
			}
		}
		return fmt.Errorf("neighbor entry %q, want state %v", got, states)
	})
}

// announcer is what the ARP and the NDP responder have in common.
type announcer interface {
	set(map[netip.Addr]bool) []netip.Addr
	announce(netip.Addr)
	serve()
	close() error
}

// startResponders makes a responder with newR on a and on b, each in its
// host's namespace, serving until the test ends.
func startResponders[R announcer](seg *segment, newR func(*net.Interface, *slog.Logger) (R, error)) (ra, rb R) {
	seg.t.Helper()
	start := func(name string) R {
		var r R
		seg.in(name, func() {
			var err error
			if r, err = newR(seg.iface(name), testLog(seg.t)); err != nil {
				panic(err)
			}
		})
		seg.goIn(name, r.serve)
		seg.t.Cleanup(func() { _ = r.close() })
		return r
	}
	return start("a"), start("b")
}

// probeCase is an address the allocator's probe is asked about, and whether
// it should find the address in use.
type probeCase struct {
	ip   string
	used bool
	why  string
}

// wantProbe runs the allocator's probe from a's segment (its sockets are
// a's) for each case.
func (s *segment) wantProbe(cases []probeCase) {
	s.t.Helper()
	var inUse func(netip.Addr) bool
	s.in("a", func() {
		var err error
		if inUse, err = Probe(s.nodeIP("a"), 300*time.Millisecond); err != nil {
			panic(err)
		}
	})
	for _, c := range cases {
		var got bool
		s.in("a", func() { got = inUse(netip.MustParseAddr(c.ip)) })
		if got != c.used {
			s.t.Errorf("probe %s = %v, want %v (%s)", c.ip, got, c.used, c.why)
		}
	}
}

// TestNDP: on a real segment of network namespaces, node a's responder
// answers a Neighbor Solicitation for its IPv6 pool address (the client's
// kernel resolves the address to a's MAC, REACHABLE); when b takes the
// address over, b's unsolicited Neighbor Advertisement (override, not
// solicited) reaches the client, whose cache moves to b's MAC, and b
// answers the client's unicast confirmation of that entry; the
// allocator's probe finds an address a machine on the segment holds, and
// the one another node announces, but not a free one nor the one this
// node announces itself.
func TestNDP(t *testing.T) {
	seg := newSegment(t, "a", "b", "client")
	pool := netip.MustParseAddr("2001:db8::10")
	ifA, ifB := seg.iface("a"), seg.iface("b")
	ra, rb := startResponders(seg, newNDPResponder)

	// a announces the address; b, which does not own it, stays silent.
	ra.set(map[netip.Addr]bool{pool: true})
	rb.set(map[netip.Addr]bool{})
	seg.send("client", pool)
	seg.wantNeighbor("client", pool, ifA.HardwareAddr, "REACHABLE")
	t.Logf("client: %s", seg.neighbor("client", pool))

	// The client listens on the all-nodes group for b's advertisement.
	var listener *ndp.Conn
	seg.in("client", func() {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			panic(err)
		}
		if listener, _, err = ndp.Listen(ifi, ndp.LinkLocal); err != nil {
			panic(err)
		}
	})
	defer listener.Close()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborAdvertisement)
	if err := listener.SetICMPFilter(&f); err != nil {
		t.Fatal(err)
	}

	// b takes over, as the election does: a stops, b announces.
	took := time.Now()
	ra.set(map[netip.Addr]bool{})
	for _, a := range rb.set(map[netip.Addr]bool{pool: true}) {
		seg.goIn("b", func() { rb.announce(a) })
	}
	_ = listener.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		m, cm, src, err := listener.ReadFrom()
		if err != nil {
			t.Fatalf("no unsolicited Neighbor Advertisement for %s from b: %v", pool, err)
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok || na.TargetAddress != pool {
			continue
		}
		if !na.Override || na.Solicited || !fromMAC(na, ifB.HardwareAddr) {
			t.Fatalf("advertisement from %s: %+v, want override, unsolicited, b's MAC %s", src, na, ifB.HardwareAddr)
		}
		if cm != nil && cm.HopLimit != 0 && cm.HopLimit != ndp.HopLimit {
			t.Errorf("hop limit %d, want %d", cm.HopLimit, ndp.HopLimit)
		}
		t.Logf("client got b's unsolicited advertisement from %s %v after takeover", src, time.Since(took))
		break
	}
	seg.wantNeighbor("client", pool, ifB.HardwareAddr, "STALE", "REACHABLE", "DELAY", "PROBE")
	// The client's next packet finds the entry STALE: after
	// delay_first_probe_time (1 s here) the client confirms it with
	// solicitations sent to the pool address itself, which b's IP stack
	// drops (not its address); b's packet socket sees them and b answers,
	// so the entry turns REACHABLE, not FAILED.
	seg.send("client", pool)
	seg.wantNeighbor("client", pool, ifB.HardwareAddr, "REACHABLE")
	t.Logf("client after the takeover: %s", seg.neighbor("client", pool))

	seg.run("ip", "-n", seg.ns("client"), "addr", "add", "2001:db8::30/64", "dev", "eth0", "nodad")
	// The client's kernel answers for it once it has joined its
	// solicited-node group (a first probe at once was not answered).
	seg.eventually("the client joins ff02::1:ff00:30", func() error {
		if out := seg.run("ip", "-n", seg.ns("client"), "-6", "maddr", "show", "dev", "eth0"); !strings.Contains(out, "ff02::1:ff00:30") {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
	ra.set(map[netip.Addr]bool{netip.MustParseAddr("2001:db8::40"): true})
	seg.wantProbe([]probeCase{
		{"2001:db8::30", true, "the client holds it"},
		{"2001:db8::10", true, "b announces it"},
		{"2001:db8::31", false, "nobody holds it"},
		{"2001:db8::40", false, "a itself announces it"},
	})
}

// TestARP is TestNDP's IPv4 counterpart on the same kind of segment: a's
// responder answers ARP for its pool address, b's gratuitous ARP moves
// the client's entry to b's MAC, and the allocator's ARP probe finds an
// address the client holds and the one b announces, but not a free one
// nor the one a announces itself.
func TestARP(t *testing.T) {
	seg := newSegment(t, "a", "b", "client")
	pool := netip.MustParseAddr("192.0.2.10")
	ifA, ifB := seg.iface("a"), seg.iface("b")
	ra, rb := startResponders(seg, newResponder)
	// The client takes an update of an entry at once (default: not
	// within a second of the last).
	seg.run("ip", "netns", "exec", seg.ns("client"), "sysctl", "-qw", "net.ipv4.neigh.eth0.locktime=0")

	ra.set(map[netip.Addr]bool{pool: true})
	rb.set(map[netip.Addr]bool{})
	seg.send("client", pool)
	seg.wantNeighbor("client", pool, ifA.HardwareAddr, "REACHABLE")
	t.Logf("client: %s", seg.neighbor("client", pool))

	ra.set(map[netip.Addr]bool{})
	for _, a := range rb.set(map[netip.Addr]bool{pool: true}) {
		seg.goIn("b", func() { rb.announce(a) })
	}
	seg.wantNeighbor("client", pool, ifB.HardwareAddr, "STALE", "REACHABLE", "DELAY", "PROBE")
	seg.send("client", pool)
	seg.wantNeighbor("client", pool, ifB.HardwareAddr, "REACHABLE")
	t.Logf("client after the takeover: %s", seg.neighbor("client", pool))

	ra.set(map[netip.Addr]bool{netip.MustParseAddr("192.0.2.40"): true})
	seg.wantProbe([]probeCase{
		{"192.0.2.3", true, "the client holds it"},
		{"192.0.2.10", true, "b announces it"},
		{"192.0.2.31", false, "nobody holds it"},
		{"192.0.2.40", false, "a itself announces it"},
	})
}
