package servicelb

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// responder answers ARP requests for the addresses it is told to own, on
// one interface, and announces an address it takes over with gratuitous
// ARP (three times, 200 ms apart), so that the segment's caches move to
// this node at once.
type responder struct {
	client *arp.Client
	log    *slog.Logger

	mu   sync.Mutex
	owns map[netip.Addr]bool
}

// interfaceOf returns the interface holding ip.
func interfaceOf(ip net.IP) (*net.Interface, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for i := range ifaces {
		addrs, _ := ifaces[i].Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				return &ifaces[i], nil
			}
		}
	}
	return nil, fmt.Errorf("no interface holds the node IP %s", ip)
}

func newResponder(ifi *net.Interface, log *slog.Logger) (*responder, error) {
	c, err := arp.Dial(ifi)
	if err != nil {
		return nil, fmt.Errorf("ARP on %s: %w", ifi.Name, err)
	}
	return &responder{client: c, log: log, owns: map[netip.Addr]bool{}}, nil
}

// set makes the responder own exactly addrs; it returns those it took over.
func (r *responder) set(addrs map[netip.Addr]bool) []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	var gained []netip.Addr
	for a := range addrs {
		if !r.owns[a] {
			gained = append(gained, a)
		}
	}
	for a := range r.owns {
		if !addrs[a] {
			r.log.Info("no longer announcing", "ip", a)
		}
	}
	r.owns = addrs
	return gained
}

// announce sends gratuitous ARP for a.
func (r *responder) announce(a netip.Addr) {
	hw := r.client.HardwareAddr()
	for i := 0; i < 3; i++ {
		p, err := arp.NewPacket(arp.OperationRequest, hw, a, ethernet.Broadcast, a)
		if err == nil {
			err = r.client.WriteTo(p, ethernet.Broadcast)
		}
		if err != nil {
			r.log.Warn("gratuitous ARP failed", "ip", a, "err", err)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// serve answers requests until the client is closed.
func (r *responder) serve() {
	hw := r.client.HardwareAddr()
	for {
		p, _, err := r.client.Read()
		if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
			return
		} else if err != nil {
			continue
		}
		if p.Operation != arp.OperationRequest {
			continue
		}
		r.mu.Lock()
		mine := r.owns[p.TargetIP]
		r.mu.Unlock()
		if mine {
			if err := r.client.Reply(p, hw, p.TargetIP); err != nil {
				r.log.Debug("ARP reply failed", "ip", p.TargetIP, "to", p.SenderIP, "err", err)
			}
		}
	}
}

func (r *responder) close() error { return r.client.Close() }

// Probe returns an InUse check for the allocator, from the interface
// holding nodeIP: for an IPv4 address an ARP request, for an IPv6 address
// a Neighbor Solicitation (probeNDP), answered within timeout by a machine
// other than this one. Where the probe cannot be sent (no IPv6 on the
// interface) the address counts as free.
func Probe(nodeIP net.IP, timeout time.Duration) (func(netip.Addr) bool, error) {
	ifi, err := interfaceOf(nodeIP)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	return func(a netip.Addr) bool {
		mu.Lock()
		defer mu.Unlock()
		if a.Is6() {
			used, err := probeNDP(ifi, a, timeout)
			return err == nil && used
		}
		c, err := arp.Dial(ifi)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		hw, err := c.Resolve(a)
		return err == nil && hw.String() != ifi.HardwareAddr.String()
	}, nil
}
