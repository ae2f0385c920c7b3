package integration

import (
	"os"
	"strings"
	"testing"

	"github.com/kedge-io/kedge/pkg/hostinfo"
)

// TestCheckConfig runs `kedge check-config` on this host: no check fails,
// and it warns of exactly what hostinfo (a separate reading) and /proc say
// this host lacks: on the Firecracker CI machines cgroup v1, no IPVS and no
// CAP_SYS_RESOURCE.
func TestCheckConfig(t *testing.T) {
	bin := kedgeBin(t)
	out, code := runKedge(t, bin, nil, "check-config", "--data-dir", t.TempDir())
	t.Logf("kedge check-config (exit %d):\n%s", code, out)
	if code != 0 || strings.Contains(out, " FAIL ") {
		t.Fatalf("check-config failed on the host that runs the tests")
	}
	warned := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Split(line, "  "); len(f) > 1 && strings.Contains(line, " WARN ") {
			warned[strings.TrimSpace(f[0])] = true
		}
	}
	h := hostinfo.Detect()
	_, ipvsErr := os.Stat("/proc/net/ip_vs")
	want := map[string]bool{
		"cgroup version":   h.CgroupV1,
		"ipvs":             ipvsErr != nil,
		"CAP_SYS_RESOURCE": !h.CanRaiseOOMPriority,
	}
	for name, w := range want {
		if warned[name] != w {
			t.Errorf("check-config warns of %q: %v, want %v", name, warned[name], w)
		}
		delete(warned, name)
	}
	for name := range warned {
		switch name {
		case "swap", "br_netfilter", "ip_forward":
			t.Logf("this host also warns of %s", name) // host settings, not the machine kind
		default:
			if !strings.HasPrefix(name, "disk ") {
				t.Errorf("unexpected warning %q", name)
			}
		}
	}
}
