package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// PowerOff cuts the node's power, as far as one kernel can: every process
// of the node dies at once by SIGKILL (kedge, the shims, the pods'
// containers), and what a reboot clears is cleared: /run is emptied, every
// mount made since the node booted (pod volumes, container root
// filesystems, network namespace files) is gone, so are the links kedge
// and the CNI created and every iptables rule, and the kubelet's cgroups
// are removed and its cgroup root made again. What a disk keeps stays: the
// data dirs, /var/lib/kubelet, /var/lib/cni, /var/log and /etc/kedge.
//
// The page cache is not dropped (the host's kernel keeps running), so a
// write that was acknowledged but never fsynced would survive here; etcd
// fsyncs before it acknowledges.
func (n *Node) PowerOff() {
	n.c.t.Helper()
	if err := n.powerOff(); err != nil {
		n.c.t.Fatal(err)
	}
}

// PowerOff cuts the power of every node at once (Node.PowerOff in
// parallel) and fails the test if any of them could not be powered off.
func (c *Cluster) PowerOff(nodes ...*Node) {
	c.t.Helper()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = n.powerOff() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.t.Fatal(err)
	}
}

// powerOff is PowerOff, with an error instead of a test failure (it runs
// on other goroutines than the test's).
func (n *Node) powerOff() error {
	out, err := n.ctl("poweroff")
	if err != nil {
		return err
	}
	if err := removeCgroups(n.CgroupRoot()); err != nil {
		return fmt.Errorf("node %s: power off: %w", n.name, err)
	}
	if err := createCgroups(n.CgroupRoot()); err != nil {
		return fmt.Errorf("node %s: power off: %w", n.name, err)
	}
	n.c.t.Logf("node %s powered off: %s", n.name, strings.TrimPrefix(out, "ok "))
	return nil
}

// mountpoints lists the mount points of the calling process's namespace.
func mountpoints() (map[string]bool, error) {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, m := range mounts {
		set[m.Mountpoint] = true
	}
	return set, nil
}

// powerOff, in the node's init, kills every other process of the node's
// PID namespace and clears what a reboot clears (see Node.PowerOff). boot
// are the mount points the node had when it booted; they stay.
func (s *supervisor) powerOff(boot map[string]bool) string {
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	// As PID 1 of the namespace, kill(-1) reaches every process in it but
	// the init itself.
	if err := syscall.Kill(-1, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return "err kill -1: " + oneLine(err.Error())
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		return "err kedge still running 30 s after SIGKILL"
	}
	if err := waitAlone(30 * time.Second); err != nil {
		return "err " + oneLine(err.Error())
	}
	var notes []string
	unmounted, err := unmountSince(boot)
	if err != nil {
		return "err " + oneLine(err.Error())
	}
	notes = append(notes, fmt.Sprintf("unmounted=%d", unmounted))
	entries, err := os.ReadDir("/run")
	if err != nil {
		return "err " + oneLine(err.Error())
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join("/run", e.Name())); err != nil {
			return "err empty /run: " + oneLine(err.Error())
		}
	}
	links, err := deleteLinks()
	if err != nil {
		return "err " + oneLine(err.Error())
	}
	notes = append(notes, fmt.Sprintf("links_deleted=%d", links))
	// The reaper waits for any child under s.mu: holding it lets the
	// iptables commands' own Wait reap them.
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := flushIptables(); err != nil {
		return "err " + oneLine(err.Error())
	}
	return "ok " + s.last + " " + strings.Join(notes, " ")
}

// waitAlone waits until the init is the only process of its PID namespace
// (the reaper collects the others as they die).
func waitAlone(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return err
		}
		var others []string
		for _, e := range entries {
			if name := e.Name(); name != "1" && strings.Trim(name, "0123456789") == "" {
				others = append(others, name)
			}
		}
		if len(others) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still alive %s after SIGKILL", others, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// unmountSince detaches every mount that is not in boot, deepest first.
func unmountSince(boot map[string]bool) (int, error) {
	now, err := mountpoints()
	if err != nil {
		return 0, err
	}
	var victims []string
	for m := range now {
		if !boot[m] {
			victims = append(victims, m)
		}
	}
	sort.Slice(victims, func(i, j int) bool { return len(victims[i]) > len(victims[j]) })
	for _, m := range victims {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return 0, fmt.Errorf("unmount %s: %w", m, err)
		}
	}
	return len(victims), nil
}

// deleteLinks deletes every network link of the node but lo and eth0 (the
// bridges, VXLAN devices and veths kedge and the CNI plugins created).
func deleteLinks() (int, error) {
	links, err := netlink.LinkList()
	for tries := 0; errors.Is(err, netlink.ErrDumpInterrupted) && tries < 20; tries++ {
		// The pods' veths vanish with their namespaces meanwhile: the
		// kernel interrupted the dump; list again.
		time.Sleep(50 * time.Millisecond)
		links, err = netlink.LinkList()
	}
	if err != nil {
		return 0, fmt.Errorf("list links: %w", err)
	}
	n := 0
	for _, l := range links {
		if name := l.Attrs().Name; name == "lo" || name == "eth0" {
			continue
		}
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			return n, fmt.Errorf("delete link %s: %w", l.Attrs().Name, err)
		}
		n++
	}
	return n, nil
}

// flushIptables empties every iptables and ip6tables table of the node, as
// after a boot.
func flushIptables() error {
	for _, bin := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "nat", "mangle", "raw"} {
			for _, op := range []string{"-F", "-X"} {
				if out, err := exec.Command(bin, "-w", "-t", table, op).CombinedOutput(); err != nil {
					return fmt.Errorf("%s -t %s %s: %w: %s", bin, table, op, err, out)
				}
			}
		}
	}
	return nil
}
