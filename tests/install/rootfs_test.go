package install

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// RootfsCache holds the Debian rootfs the containers boot, made once.
const RootfsCache = "/var/cache/kedge-test/rootfs"

// rootfsPackages are installed into it besides the minimal base: systemd
// to boot, and what install.sh and kedge use on a host (curl or wget,
// iptables, nft, modprobe, mount).
var rootfsPackages = []string{"systemd", "systemd-sysv", "dbus", "iptables", "nftables", "iproute2", "procps", "kmod", "curl", "wget", "ca-certificates"}

// debianMirror is where debootstrap fetches the packages.
const debianMirror = "http://deb.debian.org/debian"

// ensureRootfs makes RootfsCache with debootstrap unless it holds this
// package list already (a stamp file says which it holds).
func ensureRootfs() (string, error) {
	stamp := "bookworm minbase " + strings.Join(rootfsPackages, ",")
	stampFile := RootfsCache + ".stamp"
	if b, err := os.ReadFile(stampFile); err == nil && string(b) == stamp {
		if _, err := os.Stat(filepath.Join(RootfsCache, "lib/systemd/systemd")); err == nil {
			return RootfsCache, nil
		}
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("%s is missing and debootstrap is not installed (Debian: apt-get install debootstrap)", RootfsCache)
	}
	tmp := RootfsCache + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
		return "", err
	}
	out, err := exec.Command("debootstrap", "--variant=minbase", "--include="+strings.Join(rootfsPackages, ","),
		"bookworm", tmp, debianMirror).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("debootstrap: %v\n%s", err, tail(string(out), 20))
	}
	os.RemoveAll(RootfsCache)
	if err := os.Rename(tmp, RootfsCache); err != nil {
		return "", err
	}
	return RootfsCache, os.WriteFile(stampFile, []byte(stamp), 0o644)
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
