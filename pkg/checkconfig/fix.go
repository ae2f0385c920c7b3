package checkconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SysctlFile is where Fix persists the sysctls, read at every boot.
const SysctlFile = "/etc/sysctl.d/90-kedge.conf"

// sysctls are the settings kedge's pod network needs. The bridge ones exist
// only with br_netfilter loaded.
var sysctls = []struct{ key, value string }{
	{"net.ipv4.ip_forward", "1"},
	{"net.ipv6.conf.all.forwarding", "1"},
	{"net.bridge.bridge-nf-call-iptables", "1"},
	{"net.bridge.bridge-nf-call-ip6tables", "1"},
}

// Fix sets the sysctls kedge needs now (under proc, "" for /proc) and
// persists them in file (SysctlFile), skipping those this kernel lacks. It
// returns what it set.
func Fix(proc, file string) ([]string, error) {
	if proc == "" {
		proc = "/proc"
	}
	var set, lines []string
	for _, s := range sysctls {
		path := filepath.Join(proc, "sys", strings.ReplaceAll(s.key, ".", "/"))
		if _, err := os.Stat(path); err != nil {
			continue // e.g. br_netfilter not loaded, no IPv6
		}
		if err := os.WriteFile(path, []byte(s.value+"\n"), 0o644); err != nil {
			return set, fmt.Errorf("set %s=%s: %w", s.key, s.value, err)
		}
		set = append(set, s.key+"="+s.value)
		lines = append(lines, s.key+" = "+s.value)
	}
	body := "# Written by kedge check-config --fix: the settings kedge's pod network needs.\n" + strings.Join(lines, "\n") + "\n"
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return set, err
	}
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		return set, fmt.Errorf("persist the sysctls in %s: %w", file, err)
	}
	return set, nil
}
