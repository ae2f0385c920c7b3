package pki

import (
	"fmt"
	"net"
	"slices"
	"strings"
)

// sanSet is an ordered, duplicate-free list of subject alternative names.
type sanSet struct {
	dns []string
	ips []net.IP
}

// addDNS adds a DNS name, compared case-insensitively.
func (s *sanSet) addDNS(name string) {
	name = strings.ToLower(name)
	if !slices.Contains(s.dns, name) {
		s.dns = append(s.dns, name)
	}
}

// addIP adds an IP address; IPv4 addresses are stored in 4-byte form.
func (s *sanSet) addIP(ip net.IP) {
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	if !slices.ContainsFunc(s.ips, ip.Equal) {
		s.ips = append(s.ips, ip)
	}
}

// add parses entry as an IP address (optionally in brackets) or else a DNS
// name, and adds it. Empty entries are ignored.
func (s *sanSet) add(entry string) error {
	entry = strings.TrimSpace(entry)
	if entry == "" {
		return nil
	}
	if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(entry, "["), "]")); ip != nil {
		s.addIP(ip)
		return nil
	}
	if !validDNSName(entry) {
		return fmt.Errorf("%q is neither an IP address nor a DNS name", entry)
	}
	s.addDNS(entry)
	return nil
}

// coveredBy reports whether every name in s is in the DNS names and IP
// addresses of a certificate.
func (s sanSet) coveredBy(dns []string, ips []net.IP) bool {
	for _, name := range s.dns {
		if !slices.ContainsFunc(dns, func(d string) bool { return strings.EqualFold(d, name) }) {
			return false
		}
	}
	for _, ip := range s.ips {
		if !slices.ContainsFunc(ips, ip.Equal) {
			return false
		}
	}
	return true
}

// validDNSName reports whether name is a syntactically valid DNS name, with
// an optional leading "*." wildcard label.
func validDNSName(name string) bool {
	name = strings.TrimPrefix(strings.TrimSuffix(name, "."), "*.")
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}

// apiserverSANs returns the names the apiserver serving certificate must
// carry: the in-cluster names of the kubernetes Service, localhost, the node
// name, the loopback and Service IPs, and every cfg.SANs entry.
func apiserverSANs(cfg Config) (sanSet, error) {
	var s sanSet
	for _, name := range []string{
		"kubernetes",
		"kubernetes.default",
		"kubernetes.default.svc",
		"kubernetes.default.svc." + cfg.ClusterDomain,
		"localhost",
	} {
		s.addDNS(name)
	}
	s.addIP(net.IPv4(127, 0, 0, 1))
	s.addIP(net.IPv6loopback)
	s.addIP(cfg.ServiceIP)
	if err := s.add(cfg.NodeName); err != nil {
		return sanSet{}, fmt.Errorf("pki: node name: %w", err)
	}
	for _, entry := range cfg.SANs {
		if err := s.add(entry); err != nil {
			return sanSet{}, fmt.Errorf("pki: SAN: %w", err)
		}
	}
	return s, nil
}

// etcdSANs returns the names the etcd server and peer certificates must
// carry: localhost, the node name, the loopback IPs and the IP entries of
// cfg.SANs.
func etcdSANs(cfg Config) (sanSet, error) {
	var s sanSet
	s.addDNS("localhost")
	s.addIP(net.IPv4(127, 0, 0, 1))
	s.addIP(net.IPv6loopback)
	if err := s.add(cfg.NodeName); err != nil {
		return sanSet{}, fmt.Errorf("pki: node name: %w", err)
	}
	var extra sanSet
	for _, entry := range cfg.SANs {
		if err := extra.add(entry); err != nil {
			return sanSet{}, fmt.Errorf("pki: SAN: %w", err)
		}
	}
	for _, ip := range extra.ips {
		s.addIP(ip)
	}
	return s, nil
}
