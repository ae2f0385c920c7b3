package flannel

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
)

// CNIConfFile is the name of the CNI configuration kedge writes.
const CNIConfFile = "10-kedge.conflist"

// CNIConfig is what the node's CNI configuration depends on.
type CNIConfig struct {
	Bridge string     // bridge interface, cni0
	Subnet *net.IPNet // the node's pod CIDR (flannel's lease)
	MTU    int        // pod interface MTU: flannel's (VXLAN: interface MTU − 50); 0: the bridge plugin's default
}

// RenderCNIConfig renders the CNI configuration list: the bridge plugin
// with host-local IPAM over the node's pod CIDR, then portmap.
//
// The bridge does not masquerade (ipMasq false): its rule would NAT every
// packet leaving the node's own /24, pod-to-pod traffic to other nodes
// included. flannel's FLANNEL-POSTRTG rules masquerade only what leaves the
// cluster CIDR, so pods see each other's real addresses across nodes.
func RenderCNIConfig(c CNIConfig) ([]byte, error) {
	if c.Bridge == "" {
		return nil, errors.New("bridge name is empty")
	}
	if c.Subnet == nil {
		return nil, errors.New("pod CIDR is empty")
	}
	defaultRoute := "0.0.0.0/0"
	if c.Subnet.IP.To4() == nil {
		defaultRoute = "::/0"
	}
	bridge := map[string]any{
		"type":         "bridge",
		"bridge":       c.Bridge,
		"isGateway":    true,
		"ipMasq":       false,
		"hairpinMode":  true,
		"forceAddress": true,
		"ipam": map[string]any{
			"type":   "host-local",
			"ranges": [][]map[string]string{{{"subnet": c.Subnet.String()}}},
			"routes": []map[string]string{{"dst": defaultRoute}},
		},
	}
	if c.MTU > 0 {
		bridge["mtu"] = c.MTU
	}
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       "kedge",
		"plugins": []any{
			bridge,
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true},
		},
	}, "", "  ")
}

// WriteCNIConfig writes the CNI configuration list into dir, atomically,
// unless an identical one is already there.
func WriteCNIConfig(dir string, c CNIConfig) error {
	raw, err := RenderCNIConfig(c)
	if err != nil {
		return fmt.Errorf("CNI config: %w", err)
	}
	return writeAtomic(filepath.Join(dir, CNIConfFile), raw)
}
