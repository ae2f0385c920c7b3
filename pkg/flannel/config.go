package flannel

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/flannel-io/flannel/pkg/backend"
	"github.com/flannel-io/flannel/pkg/ip"
	"github.com/flannel-io/flannel/pkg/ipmatch"
)

// Backend is how pod traffic crosses nodes (--flannel-backend).
type Backend string

const (
	// VXLAN encapsulates pod traffic in UDP (port 8472) between the nodes'
	// addresses: it works over any IP network. The default.
	VXLAN Backend = "vxlan"
	// HostGW routes each node's pod CIDR through that node's address: no
	// encapsulation, but every node must be on the same L2 segment.
	HostGW Backend = "host-gw"
	// None means kedge sets up no pod network: the user installs a CNI.
	None Backend = "none"
)

// ParseBackend validates a --flannel-backend value.
func ParseBackend(s string) (Backend, error) {
	switch b := Backend(strings.ToLower(strings.TrimSpace(s))); b {
	case VXLAN, HostGW, None:
		return b, nil
	}
	return "", fmt.Errorf("unknown backend %q: want %s, %s or %s", s, VXLAN, HostGW, None)
}

// NetConf renders flannel's network configuration (flanneld's
// net-conf.json) for an IPv4 cluster CIDR.
func NetConf(b Backend, clusterCIDR string) ([]byte, error) {
	_, network, err := net.ParseCIDR(clusterCIDR)
	if err != nil {
		return nil, fmt.Errorf("cluster CIDR %q: %w", clusterCIDR, err)
	}
	if network.IP.To4() == nil {
		return nil, fmt.Errorf("cluster CIDR %s: flannel in kedge supports IPv4 only", network)
	}
	if b != VXLAN && b != HostGW {
		return nil, fmt.Errorf("backend %q: want %s or %s", b, VXLAN, HostGW)
	}
	return json.MarshalIndent(map[string]any{
		"Network":    network.String(),
		"EnableIPv4": true,
		"Backend":    map[string]string{"Type": string(b)},
	}, "", "  ")
}

// ExternalInterface finds the interface that carries pod traffic between
// nodes and the address flannel publishes: the interface named iface
// (--flannel-iface), or else the one holding nodeIP (--node-ip). Errors name
// the flag to change.
func ExternalInterface(iface string, nodeIP net.IP) (*backend.ExternalInterface, error) {
	stack, err := ipmatch.GetIPFamily(true, false)
	if err != nil {
		return nil, err
	}
	if iface == "" {
		if nodeIP == nil || nodeIP.To4() == nil {
			return nil, fmt.Errorf("--node-ip %s: flannel needs an IPv4 node address (or set --flannel-iface)", nodeIP)
		}
		ext, err := ipmatch.LookupExtIface(nodeIP.String(), "", "", stack, ipmatch.PublicIPOpts{})
		if err != nil {
			return nil, fmt.Errorf("--node-ip %s is on no interface of this host (set --flannel-iface): %w", nodeIP, err)
		}
		return ext, nil
	}
	link, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("--flannel-iface %s: no such network interface", iface)
	}
	// Prefer the node IP when the named interface holds it.
	lookup := iface
	if addrs, err := link.Addrs(); err == nil && nodeIP != nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(nodeIP) && nodeIP.To4() != nil {
				lookup = nodeIP.String()
			}
		}
	}
	ext, err := ipmatch.LookupExtIface(lookup, "", "", stack, ipmatch.PublicIPOpts{})
	if err != nil {
		return nil, fmt.Errorf("--flannel-iface %s: %w", iface, err)
	}
	return ext, nil
}

// readSubnetFile reads the network and the node's subnet from flannel's
// subnet.env of a previous run; zero values when there is none.
func readSubnetFile(path string) (network, subnet ip.IP4Net) {
	f, err := os.Open(path)
	if err != nil {
		return network, subnet
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		key, value, ok := strings.Cut(strings.TrimSpace(s.Text()), "=")
		if !ok {
			continue
		}
		// FLANNEL_SUBNET holds the bridge address (10.42.3.1/24): keep the network.
		_, n, err := net.ParseCIDR(value)
		if err != nil || n.IP.To4() == nil {
			continue
		}
		switch key {
		case "FLANNEL_NETWORK":
			network = ip.FromIPNet(n)
		case "FLANNEL_SUBNET":
			subnet = ip.FromIPNet(n)
		}
	}
	return network, subnet
}
