package checkconfig

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/kedge-io/kedge/pkg/agent"
)

// fakeProc writes files under a temp dir laid out like /proc.
func fakeProc(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// byName indexes results.
func byName(rs []Result) map[string]Result {
	m := map[string]Result{}
	for _, r := range rs {
		m[r.Name] = r
	}
	return m
}

func TestHostChecks(t *testing.T) {
	good := map[string]string{
		"sys/kernel/osrelease":                   "6.1.0-13-amd64\n",
		"filesystems":                            "nodev\ttmpfs\n\text4\nnodev\toverlay\n",
		"sys/net/bridge/bridge-nf-call-iptables": "1\n",
		"sys/net/ipv4/ip_forward":                "1\n",
		"net/ip_vs":                              "",
		"swaps":                                  "Filename\tType\tSize\tUsed\tPriority\n",
		"self/status":                            "Name:\tkedge\nCapBnd:\t000001ffffffffff\n",
		"cgroups":                                "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t3\t4\t1\ncpu\t1\t4\t1\ncpuacct\t2\t4\t1\nmemory\t4\t30\t1\ndevices\t5\t4\t1\nfreezer\t6\t4\t1\npids\t8\t4\t1\n",
	}
	h := host{proc: fakeProc(t, good), sys: t.TempDir()} // a /sys that is not cgroup2: v1
	got := byName(append([]Result{h.kernel(), h.overlayfs(), h.brNetfilter(), h.ipForward(), h.ipvs(), h.swap()}, append(h.capabilities(), h.cgroups()...)...))
	for name, want := range map[string]Status{
		"kernel": Pass, "overlayfs": Pass, "br_netfilter": Pass, "ip_forward": Pass, "ipvs": Pass, "swap": Pass,
		"CAP_SYS_ADMIN": Pass, "CAP_NET_ADMIN": Pass, "CAP_SYS_RESOURCE": Pass, "cgroup version": Warn, "cgroup controllers": Pass,
	} {
		if got[name].Status != want {
			t.Errorf("good host: %s = %s (%s), want %s", name, got[name].Status, got[name].Detail, want)
		}
	}

	bad := map[string]string{
		"sys/kernel/osrelease":    "4.9.0\n",
		"filesystems":             "nodev\ttmpfs\n\text4\n",
		"sys/net/ipv4/ip_forward": "0\n",
		"swaps":                   "Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1024 0 -2\n",
		"self/status":             "CapBnd:\t00000000a80425fb\n", // a default Docker container's set
		"cgroups":                 "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t4\t1\nmemory\t4\t30\t0\n",
	}
	h = host{proc: fakeProc(t, bad), sys: t.TempDir()}
	got = byName(append([]Result{h.kernel(), h.overlayfs(), h.brNetfilter(), h.ipForward(), h.ipvs(), h.swap()}, append(h.capabilities(), h.cgroups()...)...))
	for name, want := range map[string]Status{
		"kernel": Fail, "overlayfs": Fail, "br_netfilter": Warn, "ip_forward": Warn, "ipvs": Warn, "swap": Warn,
		"CAP_SYS_ADMIN": Fail, "CAP_NET_ADMIN": Fail, "CAP_SYS_RESOURCE": Warn, "cgroup controllers": Fail,
	} {
		r := got[name]
		if r.Status != want {
			t.Errorf("bad host: %s = %s (%s), want %s", name, r.Status, r.Detail, want)
		}
		if r.Status != Pass && r.Fix == "" && name != "ipvs" {
			t.Errorf("bad host: %s has no fix", name)
		}
	}
	if d := got["cgroup controllers"].Detail; !strings.Contains(d, "memory") || strings.Contains(d, "cpu,") {
		t.Errorf("missing controllers: %q", d)
	}
}

func TestKernelVersion(t *testing.T) {
	for in, want := range map[string][2]int{"6.18.44-fc-v657": {6, 18}, "5.10.0+": {5, 10}, "4.19": {4, 19}, "5.4rc1.x": {5, 4}} {
		if ma, mi, ok := kernelVersion(in); !ok || ma != want[0] || mi != want[1] {
			t.Errorf("kernelVersion(%q) = %d.%d %v", in, ma, mi, ok)
		}
	}
	if _, _, ok := kernelVersion("garbage"); ok {
		t.Error("kernelVersion(garbage) ok")
	}
}

func TestPortsAndDisk(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rs := ports([]agent.Port{{Addr: l.Addr().String(), What: "test port"}, {Addr: "127.0.0.1:0", What: "any port"}})
	if rs[0].Status != Fail || !strings.Contains(rs[0].Detail, "already in use") || rs[1].Status != Pass {
		t.Fatalf("ports: %+v", rs)
	}
	if r := disk(filepath.Join(t.TempDir(), "not", "yet"), 1<<20); r.Status == Fail {
		t.Fatalf("disk of a dir to be made: %+v", r)
	}
	if r := disk(t.TempDir(), 1<<62); r.Status != Fail || !strings.Contains(r.Detail, "--etcd-min-free") {
		t.Fatalf("disk under min free: %+v", r)
	}
}

func TestFix(t *testing.T) {
	proc := fakeProc(t, map[string]string{"sys/net/ipv4/ip_forward": "0\n", "sys/net/ipv6/conf/all/forwarding": "0\n"})
	file := filepath.Join(t.TempDir(), "sysctl.d", "90-kedge.conf")
	set, err := Fix(proc, file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(set, ",") != "net.ipv4.ip_forward=1,net.ipv6.conf.all.forwarding=1" {
		t.Fatalf("set %v (the bridge sysctls do not exist here)", set)
	}
	if v, _ := os.ReadFile(filepath.Join(proc, "sys/net/ipv4/ip_forward")); strings.TrimSpace(string(v)) != "1" {
		t.Fatalf("ip_forward = %q", v)
	}
	persisted, _ := os.ReadFile(file)
	if !strings.Contains(string(persisted), "net.ipv4.ip_forward = 1\n") || strings.Contains(string(persisted), "bridge") {
		t.Fatalf("persisted:\n%s", persisted)
	}
}

func TestPrintAndFailed(t *testing.T) {
	rs := []Result{pass("a", "fine"), warn("b", "meh", "do x"), fail("c", "broken", "do y")}
	var buf bytes.Buffer
	Print(&buf, rs)
	out := buf.String()
	for _, want := range []string{"CHECK", "meh — fix: do x", "broken — fix: do y", "3 checks: 1 PASS, 1 WARN, 1 FAIL"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if !Failed(rs) || Failed(rs[:2]) {
		t.Error("Failed")
	}
}

func TestLinksInScratchNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a network namespace needs root")
	}
	for _, r := range links() {
		if r.Status != Pass {
			t.Errorf("%s: %s %s", r.Name, r.Status, r.Detail)
		}
	}
	// Nothing was made in this namespace.
	ifaces, _ := net.Interfaces()
	for _, i := range ifaces {
		if strings.HasPrefix(i.Name, "kcheck-") {
			t.Errorf("%s left in the test's namespace", i.Name)
		}
	}
}

// TestIPSetsInScratchNetns: this kernel has the ipset types NetworkPolicy
// enforcement needs, and the check leaves no set behind.
func TestIPSetsInScratchNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a network namespace needs root")
	}
	results := ipsets()
	if len(results) != 2 {
		t.Fatalf("%d results, want hash:ip and hash:net", len(results))
	}
	for _, r := range results {
		if r.Status != Pass {
			t.Errorf("%s: %s %s", r.Name, r.Status, r.Detail)
		}
	}
	if sets, err := netlink.IpsetListAll(); err == nil {
		for _, s := range sets {
			if strings.HasPrefix(s.SetName, "kcheck-") {
				t.Errorf("ipset %s left in the test's namespace", s.SetName)
			}
		}
	}
}
