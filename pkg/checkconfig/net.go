package checkconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kedge-io/kedge/pkg/agent"
	"github.com/kedge-io/kedge/pkg/diskguard"
)

// links creates a bridge, a veth pair and a VXLAN device in a throwaway
// network namespace: the devices the CNI plugins and flannel make. A kernel
// without modules shows here what it lacks, where no file would.
func links() []Result {
	kinds := []struct {
		name string
		link netlink.Link
		fix  string
	}{
		{"bridge", &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "kcheck-br"}}, "modprobe bridge (CONFIG_BRIDGE): the CNI bridge plugin needs it"},
		{"veth", &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "kcheck-v0"}, PeerName: "kcheck-v1"}, "modprobe veth (CONFIG_VETH): every pod's interface is one"},
		{"vxlan", &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "kcheck-vx"}, VxlanId: 1, Port: 8472}, "modprobe vxlan (CONFIG_VXLAN), or --flannel-backend=host-gw on one L2 segment"},
	}
	errs := make([]error, len(kinds))
	err := inScratchNetns(func() {
		for i, k := range kinds {
			errs[i] = netlink.LinkAdd(k.link)
		}
	})
	out := make([]Result, 0, len(kinds))
	for i, k := range kinds {
		name := k.name + " device"
		switch {
		case err != nil:
			out = append(out, warn(name, "not checked: "+err.Error(), "run check-config as root"))
		case errs[i] != nil:
			out = append(out, fail(name, "cannot create one: "+errs[i].Error(), k.fix))
		default:
			out = append(out, pass(name, "created and removed in a scratch network namespace"))
		}
	}
	return out
}

// ipsets creates a hash:ip and a hash:net set in a throwaway network
// namespace: the ipsets of NetworkPolicy enforcement (pkg/netpol).
func ipsets() []Result {
	types := []string{"hash:ip", "hash:net"}
	errs := make([]error, len(types))
	err := inScratchNetns(func() {
		for i, typ := range types {
			errs[i] = netlink.IpsetCreate("kcheck-"+typ[5:], typ, netlink.IpsetCreateOptions{})
		}
	})
	out := make([]Result, 0, len(types))
	for i, typ := range types {
		name := "ipset " + typ
		switch {
		case err != nil:
			out = append(out, warn(name, "not checked: "+err.Error(), "run check-config as root"))
		case errs[i] != nil:
			out = append(out, warn(name, "cannot create one: "+errs[i].Error(),
				"CONFIG_IP_SET and CONFIG_IP_SET_"+strings.ToUpper(strings.ReplaceAll(typ, ":", "_"))+" for NetworkPolicies, or --disable network-policy"))
		default:
			out = append(out, pass(name, "created in a scratch network namespace (NetworkPolicy enforcement)"))
		}
	}
	return out
}

// inScratchNetns runs f on a thread moved into a new network namespace;
// the thread ends with it, and the namespace (and what f made) with the
// thread.
func inScratchNetns(f func()) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("new network namespace: %w", err)
			return
		}
		f()
		done <- nil
	}()
	return <-done
}

// disk checks the free space of the data dir's filesystem.
func disk(dataDir string, minFree uint64) Result {
	dir := dataDir
	for {
		if _, err := os.Stat(dir); err == nil || dir == "/" || dir == "." {
			break
		}
		dir = filepath.Dir(dir)
	}
	free, err := diskguard.FreeBytes(dir)
	if err != nil {
		return fail("disk "+dataDir, err.Error(), "check --data-dir")
	}
	detail := fmt.Sprintf("%d MiB free on the filesystem of %s", free>>20, dir)
	switch {
	case free < minFree:
		return fail("disk "+dataDir, detail+fmt.Sprintf(", under --etcd-min-free %d MiB: a server would refuse writes", minFree>>20), "free space there, or choose another --data-dir")
	case free < 2<<30:
		return warn("disk "+dataDir, detail, "keep 2 GiB or more free for images, etcd and logs")
	}
	return pass("disk "+dataDir, detail)
}

// ports checks that every address is free.
func ports(ps []agent.Port) []Result {
	var out []Result
	for _, p := range ps {
		name := "port " + p.Addr
		if err := agent.CheckPorts([]agent.Port{p}); err != nil {
			out = append(out, fail(name, err.Error(), "stop what listens there (ss -ltnp): another kedge or Kubernetes?"))
		} else {
			out = append(out, pass(name, p.What+": free"))
		}
	}
	return out
}
