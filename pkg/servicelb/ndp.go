package servicelb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv6"
)

// allNodes is the IPv6 all-nodes multicast group, where unsolicited
// Neighbor Advertisements go.
var allNodes = netip.MustParseAddr("ff02::1")

// ndpResponder is the IPv6 counterpart of the ARP responder: it answers
// Neighbor Solicitations for the addresses it is told to own on one
// interface, having joined each address's solicited-node multicast group
// (where solicitations for it are sent), and announces an address it takes
// over with unsolicited Neighbor Advertisements carrying the override flag
// (three times, 200 ms apart), so that the segment's caches move to this
// node at once.
//
// Solicitations are read from a packet socket, not from the ICMPv6
// socket: a client confirming a cached entry (neighbor unreachability
// detection) sends its solicitation to the pool address itself, which is
// not an address of the node, so the node's IP stack drops it before an
// ICMPv6 socket sees it, and the client's entry fails (seen in
// TestNDP). The packet socket sees the frame; a BPF filter passes only
// ICMPv6 Neighbor Solicitations. The ICMPv6 socket sends, and holds the
// solicited-node groups, which make the interface accept their frames.
type ndpResponder struct {
	conn   *ndp.Conn
	frames *packet.Conn
	hw     net.HardwareAddr
	log    *slog.Logger

	mu     sync.Mutex
	owns   map[netip.Addr]bool
	groups map[netip.Addr]int // solicited-node group → owned addresses in it
}

// newNDPResponder listens for NDP on ifi from its link-local address; it
// fails where the interface has no IPv6 (disabled, or no link-local
// address yet).
func newNDPResponder(ifi *net.Interface, log *slog.Logger) (*ndpResponder, error) {
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return nil, fmt.Errorf("NDP on %s: %w", ifi.Name, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborSolicitation)
	if err := c.SetICMPFilter(&f); err != nil { // the ICMPv6 socket only sends
		c.Close()
		return nil, fmt.Errorf("NDP on %s: %w", ifi.Name, err)
	}
	frames, err := packet.Listen(ifi, packet.Datagram, etherTypeIPv6, &packet.Config{Filter: solicitations})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("NDP on %s: packet socket: %w", ifi.Name, err)
	}
	return &ndpResponder{conn: c, frames: frames, hw: ifi.HardwareAddr, log: log, owns: map[netip.Addr]bool{}, groups: map[netip.Addr]int{}}, nil
}

// etherTypeIPv6 is the EtherType of IPv6.
const etherTypeIPv6 = 0x86dd

// solicitations is a BPF program passing the IPv6 packets (from the IPv6
// header on, as a datagram packet socket sees them) that carry an ICMPv6
// Neighbor Solicitation right after the fixed header, as RFC 4861 sends
// them.
var solicitations = func() []bpf.RawInstruction {
	raw, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 6, Size: 1}, // next header
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 58, SkipTrue: 3},
		bpf.LoadAbsolute{Off: 40, Size: 1}, // ICMPv6 type
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(ipv6.ICMPTypeNeighborSolicitation), SkipTrue: 1},
		bpf.RetConstant{Val: 1 << 16},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		panic(err) // a constant program
	}
	return raw
}()

// parseSolicitation reads an IPv6 packet holding a Neighbor
// Solicitation: its source address and the message.
func parseSolicitation(b []byte) (netip.Addr, *ndp.NeighborSolicitation, bool) {
	const header = 40
	if len(b) < header || b[0]>>4 != 6 || b[6] != 58 || b[7] != ndp.HopLimit {
		return netip.Addr{}, nil, false
	}
	end := header + int(binary.BigEndian.Uint16(b[4:6]))
	if end > len(b) {
		return netip.Addr{}, nil, false
	}
	m, err := ndp.ParseMessage(b[header:end])
	if err != nil {
		return netip.Addr{}, nil, false
	}
	ns, ok := m.(*ndp.NeighborSolicitation)
	return netip.AddrFrom16([16]byte(b[8:24])), ns, ok
}

// set makes the responder own exactly addrs, joining and leaving their
// solicited-node groups; it returns those it took over.
func (r *ndpResponder) set(addrs map[netip.Addr]bool) []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	var gained []netip.Addr
	for a := range addrs {
		if r.owns[a] {
			continue
		}
		g, err := ndp.SolicitedNodeMulticast(a)
		if err != nil {
			continue
		}
		if r.groups[g] == 0 {
			if err := r.conn.JoinGroup(g); err != nil {
				r.log.Warn("cannot join the solicited-node group; Neighbor Solicitations for the address go unanswered", "ip", a, "group", g, "err", err)
			}
		}
		r.groups[g]++
		gained = append(gained, a)
	}
	for a := range r.owns {
		if addrs[a] {
			continue
		}
		r.log.Info("no longer announcing", "ip", a)
		g, _ := ndp.SolicitedNodeMulticast(a)
		if r.groups[g]--; r.groups[g] <= 0 {
			delete(r.groups, g)
			_ = r.conn.LeaveGroup(g)
		}
	}
	owns := make(map[netip.Addr]bool, len(addrs))
	for a := range addrs {
		owns[a] = true
	}
	r.owns = owns
	return gained
}

// advertisement is the Neighbor Advertisement of a with this interface's
// MAC, overriding what a cache holds.
func (r *ndpResponder) advertisement(a netip.Addr, solicited bool) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Solicited: solicited, Override: true, TargetAddress: a,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: r.hw}},
	}
}

// announce sends unsolicited Neighbor Advertisements for a to all nodes.
func (r *ndpResponder) announce(a netip.Addr) {
	for i := 0; i < 3; i++ {
		if err := r.conn.WriteTo(r.advertisement(a, false), nil, allNodes); err != nil {
			r.log.Warn("unsolicited Neighbor Advertisement failed", "ip", a, "err", err)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// serve answers solicitations until the connection is closed: to the
// soliciting node, or to all nodes for a duplicate address detection
// probe (which comes from the unspecified address).
func (r *ndpResponder) serve() {
	b := make([]byte, 1<<16)
	for {
		n, from, err := r.frames.ReadFrom(b)
		if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
			return
		} else if err != nil {
			continue
		}
		if a, ok := from.(*packet.Addr); ok && bytes.Equal(a.HardwareAddr, r.hw) {
			continue // sent by this node (packet sockets see outgoing frames too)
		}
		src, ns, ok := parseSolicitation(b[:n])
		if !ok {
			continue
		}
		r.mu.Lock()
		mine := r.owns[ns.TargetAddress]
		r.mu.Unlock()
		if !mine {
			continue
		}
		dst, solicited := src, true
		if src.IsUnspecified() {
			dst, solicited = allNodes, false
		}
		if err := r.conn.WriteTo(r.advertisement(ns.TargetAddress, solicited), nil, dst); err != nil {
			r.log.Debug("Neighbor Advertisement failed", "ip", ns.TargetAddress, "to", src, "err", err)
		}
	}
}

func (r *ndpResponder) close() error {
	return errors.Join(r.frames.Close(), r.conn.Close())
}

// probeNDP reports whether a machine on ifi's segment other than this one
// answers a Neighbor Solicitation for a within timeout. The solicitation
// goes to a's solicited-node group, as duplicate address detection's
// does, but from the interface's link-local address and with its MAC, so
// that an owner answers the probe directly.
func probeNDP(ifi *net.Interface, a netip.Addr, timeout time.Duration) (bool, error) {
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return false, err
	}
	defer c.Close()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborAdvertisement)
	if err := c.SetICMPFilter(&f); err != nil {
		return false, err
	}
	g, err := ndp.SolicitedNodeMulticast(a)
	if err != nil {
		return false, err
	}
	ns := &ndp.NeighborSolicitation{TargetAddress: a,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}}
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return false, err
	}
	if err := c.WriteTo(ns, nil, g); err != nil {
		return false, err
	}
	for {
		m, _, _, err := c.ReadFrom()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false, nil
			}
			return false, err
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if ok && na.TargetAddress == a && !fromMAC(na, ifi.HardwareAddr) {
			return true, nil
		}
	}
}

// fromMAC reports whether na gives hw as its target's link-layer address.
func fromMAC(na *ndp.NeighborAdvertisement, hw net.HardwareAddr) bool {
	for _, o := range na.Options {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Addr.String() == hw.String() {
			return true
		}
	}
	return false
}
