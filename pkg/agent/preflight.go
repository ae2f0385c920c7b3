package agent

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/kedge-io/kedge/pkg/flannel"
)

// Port is one address a node component listens on, and which one.
type Port struct {
	Addr string
	What string
}

// Ports lists the addresses the node components bind.
func Ports(nodeIP net.IP) []Port {
	return []Port{
		{"0.0.0.0:10250", "kubelet port"},
		{"127.0.0.1:10248", "kubelet healthz port"},
		{"127.0.0.1:10256", "kube-proxy healthz port"},
		{"127.0.0.1:10249", "kube-proxy metrics port"},
		{net.JoinHostPort(nodeIP.String(), "53"), "cluster DNS port (CoreDNS on the node IP)"},
		{"127.0.0.1:8181", "CoreDNS ready port"},
		{"127.0.0.1:8180", "CoreDNS health port"},
	}
}

// CheckPorts fails on the first address that cannot be listened on, naming
// what needs it.
func CheckPorts(ports []Port) error {
	for _, p := range ports {
		l, err := net.Listen("tcp", p.Addr)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("%s: address %s already in use (is another kedge or Kubernetes running?)", p.What, p.Addr)
			}
			return fmt.Errorf("%s: cannot listen on %s: %w", p.What, p.Addr, err)
		}
		l.Close()
	}
	return nil
}

// CheckNetwork checks that flannel will find its interface.
func CheckNetwork(cfg Config) error {
	if cfg.FlannelBackend == flannel.None {
		return nil
	}
	_, err := flannel.ExternalInterface(cfg.FlannelIface, cfg.NodeIP)
	return err
}
