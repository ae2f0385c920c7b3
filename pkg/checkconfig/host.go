package checkconfig

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// host reads facts from a /proc and a /sys.
type host struct{ proc, sys string }

// read returns a file's trimmed contents, "" if it cannot be read.
func (h host) read(path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(raw))
}

// checkRoot: kedge runs as root.
func checkRoot() Result {
	if os.Geteuid() != 0 {
		return fail("root", fmt.Sprintf("running as uid %d", os.Geteuid()), "run kedge (and this check) as root")
	}
	return pass("root", "uid 0")
}

// kernel checks the release: Kubernetes wants 4.19 or newer.
func (h host) kernel() Result {
	release := h.read(filepath.Join(h.proc, "sys/kernel/osrelease"))
	major, minor, ok := kernelVersion(release)
	switch {
	case !ok:
		return warn("kernel", fmt.Sprintf("cannot parse the kernel release %q", release), "")
	case major < 4 || major == 4 && minor < 15:
		return fail("kernel", "Linux "+release, "kedge needs Linux 4.15 or newer (5.x recommended)")
	case major == 4 && minor < 19:
		return warn("kernel", "Linux "+release, "Kubernetes supports Linux 4.19 or newer: upgrade the kernel")
	}
	return pass("kernel", "Linux "+release)
}

// kernelVersion parses "6.18.44-fc-v657" into 6, 18.
func kernelVersion(release string) (int, int, bool) {
	f := strings.SplitN(release, ".", 3)
	if len(f) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(f[0])
	digits := f[1]
	if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = digits[:i]
	}
	minor, err2 := strconv.Atoi(digits)
	return major, minor, err1 == nil && err2 == nil
}

// cgroups checks the version and the controllers the kubelet needs.
func (h host) cgroups() []Result {
	root := filepath.Join(h.sys, "fs/cgroup")
	var st unix.Statfs_t
	v2 := unix.Statfs(root, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
	need := []string{"cpu", "memory", "pids", "cpuset"}
	var have map[string]bool
	var version Result
	if v2 {
		version = pass("cgroup version", "v2 (unified)")
		have = map[string]bool{}
		for _, c := range strings.Fields(h.read(filepath.Join(root, "cgroup.controllers"))) {
			have[c] = true
		}
	} else {
		version = warn("cgroup version", "v1: the kubelet runs with failCgroupV1=false (upstream keeps v1 in maintenance mode only)",
			"boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2)")
		have = v1Controllers(h.read(filepath.Join(h.proc, "cgroups")))
		need = append(need, "cpuacct", "devices", "freezer")
	}
	var missing []string
	for _, c := range need {
		if !have[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return []Result{version, fail("cgroup controllers", "missing: "+strings.Join(missing, ", "),
			"enable them in the kernel (CONFIG_CGROUP_*, CONFIG_MEMCG) or on its command line (cgroup_enable=memory)")}
	}
	return []Result{version, pass("cgroup controllers", strings.Join(need, ", "))}
}

// v1Controllers lists the enabled controllers of a /proc/cgroups.
func v1Controllers(procCgroups string) map[string]bool {
	have := map[string]bool{}
	s := bufio.NewScanner(strings.NewReader(procCgroups))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) == 4 && !strings.HasPrefix(f[0], "#") && f[3] == "1" {
			have[f[0]] = true
		}
	}
	return have
}

// overlayfs: containerd's snapshotter.
func (h host) overlayfs() Result {
	for _, line := range strings.Split(h.read(filepath.Join(h.proc, "filesystems")), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == "overlay" {
			return pass("overlayfs", "supported")
		}
	}
	return fail("overlayfs", "not in /proc/filesystems: containerd's overlayfs snapshotter cannot run", "modprobe overlay (CONFIG_OVERLAY_FS)")
}

// iptables: kube-proxy and flannel run the host's iptables.
func (h host) iptables() Result {
	path, err := exec.LookPath("iptables")
	if err != nil {
		return fail("iptables", "no iptables command: kube-proxy and flannel program netfilter with it", "install iptables (nf_tables or legacy)")
	}
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil {
		return fail("iptables", fmt.Sprintf("%s --version: %v: %s", path, err, strings.TrimSpace(string(out))), "install a working iptables")
	}
	return pass("iptables", strings.TrimSpace(string(out)))
}

// brNetfilter: bridged pod traffic must pass through iptables for
// Services to work between pods on one node.
func (h host) brNetfilter() Result {
	v := h.read(filepath.Join(h.proc, "sys/net/bridge/bridge-nf-call-iptables"))
	switch v {
	case "1":
		return pass("br_netfilter", "bridge-nf-call-iptables=1")
	case "":
		return warn("br_netfilter", "not loaded: pods on one node may not reach each other through Services",
			"modprobe br_netfilter, then kedge check-config --fix")
	}
	return warn("br_netfilter", "bridge-nf-call-iptables="+v, "kedge check-config --fix")
}

// ipForward: routing pod traffic between nodes.
func (h host) ipForward() Result {
	if v := h.read(filepath.Join(h.proc, "sys/net/ipv4/ip_forward")); v != "1" {
		return warn("ip_forward", "net.ipv4.ip_forward="+v+": pods cannot reach other nodes", "kedge check-config --fix")
	}
	return pass("ip_forward", "net.ipv4.ip_forward=1")
}

// ipvs: only kube-proxy's ipvs mode needs it.
func (h host) ipvs() Result {
	if _, err := os.Stat(filepath.Join(h.proc, "net/ip_vs")); err != nil {
		return warn("ipvs", "no IPVS in the kernel: kube-proxy's ipvs mode is unavailable (kedge uses iptables mode)",
			"only for --kube-proxy-arg=proxy-mode=ipvs: modprobe ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh")
	}
	return pass("ipvs", "available")
}

// swap: the kubelet runs with failSwapOn=false, but memory limits are
// softer with swap on.
func (h host) swap() Result {
	lines := strings.Split(h.read(filepath.Join(h.proc, "swaps")), "\n")
	if n := len(lines) - 1; n > 0 {
		return warn("swap", fmt.Sprintf("%d swap device(s) on: pods' memory limits do not bound their swap use", n), "swapoff -a (and remove swap from /etc/fstab)")
	}
	return pass("swap", "off")
}

// Capability bits (linux/capability.h).
const (
	capNetAdmin    = 12
	capSysAdmin    = 21
	capSysResource = 24
)

// capabilities reads the bounding set: what kedge can ever hold.
func (h host) capabilities() []Result {
	var bnd uint64
	for _, line := range strings.Split(h.read(filepath.Join(h.proc, "self/status")), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			bnd, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	has := func(bit uint) bool { return bnd&(1<<bit) != 0 }
	var out []Result
	for _, c := range []struct {
		name string
		bit  uint
	}{{"CAP_SYS_ADMIN", capSysAdmin}, {"CAP_NET_ADMIN", capNetAdmin}} {
		if has(c.bit) {
			out = append(out, pass(c.name, "in the bounding set"))
		} else {
			out = append(out, fail(c.name, "not in the bounding set: kedge cannot mount or configure networking",
				"run kedge on the host, or in a container with this capability (--cap-add ALL)"))
		}
	}
	if has(capSysResource) {
		out = append(out, pass("CAP_SYS_RESOURCE", "in the bounding set"))
	} else {
		out = append(out, warn("CAP_SYS_RESOURCE", "not in the bounding set: no negative oom_score_adj (containerd restrict_oom_score_adj; kedge itself stays at its own)",
			"run where CAP_SYS_RESOURCE is allowed (e.g. not a container started with --cap-drop SYS_RESOURCE)"))
	}
	return out
}
