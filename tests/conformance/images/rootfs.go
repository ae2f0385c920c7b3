package images

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CacheDir holds what the stand-ins are built from and is kept between
// runs: the Debian rootfs (debian/, made once with debootstrap) and the
// layers made of it (layers/).
const CacheDir = "/var/cache/kedge-test/conformance"

// DebianSuite is the Debian release of the rootfs.
const DebianSuite = "bookworm"

// debianMirror is where debootstrap fetches the packages.
const debianMirror = "http://deb.debian.org/debian"

// DebianPackages are installed into the rootfs besides the minimal base
// (which has bash, coreutils, getent, grep, sed, mount, …). Upstream's
// agnhost Dockerfile installs bind-tools, curl, netcat-openbsd, iproute2,
// iperf, bash and util-linux-misc on Alpine; these are their Debian names
// (ipcs is in util-linux, in the base), plus busybox for the busybox image
// and the applets Alpine's base has (wget, ping, …), nginx for the nginx
// images, procps (ps) and the CA bundle.
var DebianPackages = []string{"bash", "bind9-dnsutils", "busybox", "ca-certificates", "curl", "iperf", "iproute2",
	"netcat-openbsd", "nginx-light", "procps", "wget"}

// debianRootfs returns CacheDir/debian, made with debootstrap unless it
// holds DebianPackages already (debian.stamp says what it holds).
func debianRootfs() (string, error) {
	dir := filepath.Join(CacheDir, "debian")
	stamp := DebianSuite + " minbase " + strings.Join(DebianPackages, ",")
	if b, err := os.ReadFile(dir + ".stamp"); err == nil && string(b) == stamp {
		return dir, nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("%s is missing and debootstrap is not installed (Debian: apt-get install debootstrap; scripts/deps.sh)", dir)
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(CacheDir, 0o755); err != nil {
		return "", err
	}
	out, err := exec.Command("nice", "-n", "10", "debootstrap", "--variant=minbase",
		"--include="+strings.Join(DebianPackages, ","), DebianSuite, tmp, debianMirror).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("debootstrap %s into %s (needs %s): %v\n%s", DebianSuite, tmp, debianMirror, err, lastLines(string(out), 20))
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, os.WriteFile(dir+".stamp", []byte(stamp), 0o644)
}

// skipInBase reports whether the path (relative to the rootfs) stays out of
// the base layer: what a container gets from its runtime (/dev, /proc,
// /sys, /run; their directories stay), package caches and documentation.
func skipInBase(rel string) bool {
	for _, p := range []string{"dev/", "proc/", "sys/", "run/", "tmp/", "var/cache/apt/", "var/lib/apt/lists/",
		"var/cache/debconf/", "usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/locale/"} {
		if strings.HasPrefix(rel, p) {
			return true
		}
	}
	return false
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
