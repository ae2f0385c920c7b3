package kubelet

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"strings"
)

// Resolv.conf files HostResolvConf considers, in order.
const (
	etcResolvConf      = "/etc/resolv.conf"
	resolvedResolvConf = "/run/systemd/resolve/resolv.conf"
)

// HostResolvConf returns the resolv.conf to give the kubelet (Config.ResolvConf):
// /etc/resolv.conf, unless it names only loopback nameservers, as on hosts
// with systemd-resolved's stub (127.0.0.53) or a local dnsmasq; pods cannot
// reach the host's loopback, and CoreDNS forwarding there loops. Then it
// returns systemd-resolved's list of the real upstream servers,
// /run/systemd/resolve/resolv.conf, if that has a usable nameserver. If no
// file does, it returns /etc/resolv.conf and pods resolve only cluster names.
func HostResolvConf() string {
	return pickResolvConf(etcResolvConf, resolvedResolvConf)
}

// pickResolvConf returns the first of files that names a non-loopback
// nameserver, or the first file.
func pickResolvConf(files ...string) string {
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err == nil && hasUsableNameserver(raw) {
			return f
		}
	}
	return files[0]
}

// hasUsableNameserver says whether a resolv.conf names a nameserver that is
// not a loopback address.
func hasUsableNameserver(resolvConf []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(resolvConf))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		// An IPv6 address may carry a zone: fe80::1%eth0.
		host, _, _ := strings.Cut(fields[1], "%")
		if ip := net.ParseIP(host); ip != nil && !ip.IsLoopback() {
			return true
		}
	}
	return false
}
