package harness

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// vethPrefix starts the host-side interface names of a cluster's nodes.
func vethPrefix(id string) string { return "ke" + id + "-" }

// createBridge creates the nodes' bridge with the host address .1. A bridge
// left by a crashed run (no ports) is replaced; one with ports belongs to a
// running cluster.
func createBridge() error {
	if old, err := netlink.LinkByName(BridgeName); err == nil {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if l.Attrs().MasterIndex == old.Attrs().Index {
				return fmt.Errorf("bridge %s exists and has port %s: another e2e cluster is running (or delete it: ip link del %s)", BridgeName, l.Attrs().Name, BridgeName)
			}
		}
		if err := netlink.LinkDel(old); err != nil {
			return fmt.Errorf("delete stale bridge %s: %w", BridgeName, err)
		}
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeName}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge %s: %w", BridgeName, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: BridgeIP(), Mask: net.CIDRMask(prefixLen, 32)}}
	if err := netlink.AddrAdd(br, addr); err != nil {
		return fmt.Errorf("address %s on %s: %w", addr, BridgeName, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("set %s up: %w", BridgeName, err)
	}
	return nil
}

func deleteBridge() error {
	br, err := netlink.LinkByName(BridgeName)
	if err != nil {
		return nil
	}
	return netlink.LinkDel(br)
}

func hostLinks() ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	return out, nil
}

// plugIn creates the node's veth pair: eth0 inside the node with its
// address, the other end on the bridge; and brings lo up.
func (n *Node) plugIn() error {
	ns, err := netns.GetFromPid(n.initPid)
	if err != nil {
		return fmt.Errorf("network namespace of pid %d: %w", n.initPid, err)
	}
	defer ns.Close()
	br, err := netlink.LinkByName(BridgeName)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", BridgeName, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: n.veth, MasterIndex: br.Attrs().Index},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", n.veth, err)
	}
	host, err := netlink.LinkByName(n.veth)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetMaster(host, br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", n.veth, BridgeName, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return err
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("node lo up: %w", err)
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return err
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: n.ip, Mask: net.CIDRMask(prefixLen, 32)}}
	if err := h.AddrAdd(eth0, addr); err != nil {
		return fmt.Errorf("node eth0 address %s: %w", addr, err)
	}
	if err := h.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("node eth0 up: %w", err)
	}
	return nil
}

// setLink sets the host end of the node's cable up or down.
func (n *Node) setLink(up bool) error {
	l, err := netlink.LinkByName(n.veth)
	if err != nil {
		return err
	}
	if up {
		return netlink.LinkSetUp(l)
	}
	return netlink.LinkSetDown(l)
}

// deleteVeth removes the host end of the node's veth pair if the kernel has
// not already (it does when the node's network namespace goes).
func (n *Node) deleteVeth() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := netlink.LinkByName(n.veth)
		if err != nil {
			return nil // gone
		}
		if time.Now().After(deadline) {
			return netlink.LinkDel(l)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// inNetns runs f on a thread in the node's network namespace. The thread
// goes back to the original namespace afterwards, or, if that fails, ends
// with the goroutine.
func (n *Node) inNetns(f func() error) error {
	if n.initPid == 0 {
		return errors.New("node is not booted")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return // the thread ends locked: harmless
		}
		defer orig.Close()
		target, err := netns.GetFromPid(n.initPid)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- f()
		if unix.Setns(int(orig), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return <-errc
}

// DialTCP opens (and closes) a TCP connection from the node to addr
// ("host:port") within timeout.
func (n *Node) DialTCP(addr string, timeout time.Duration) error {
	return n.inNetns(func() error {
		conn, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return err
		}
		return conn.Close()
	})
}
