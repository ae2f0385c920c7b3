package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"github.com/kedge-io/kedge/pkg/etcd"
	"github.com/kedge-io/kedge/pkg/flannel"
)

// port is one address the server will listen on, and who asked for it.
type port struct {
	addr string
	what string
}

// ports lists every address the server binds, for the preflight check.
func (c Config) ports() []port {
	https := net.JoinHostPort(c.BindAddress.String(), strconv.Itoa(c.HTTPSPort))
	ps := []port{
		{https, "--https-listen-port " + strconv.Itoa(c.HTTPSPort) + " (apiserver)"},
		{net.JoinHostPort("127.0.0.1", strconv.Itoa(etcd.ClientPort)), "etcd client port"},
		{"127.0.0.1:2381", "etcd metrics port"},
		{net.JoinHostPort(c.AdvertiseIP.String(), strconv.Itoa(etcd.PeerPort)), "etcd peer port"},
		{"127.0.0.1:10257", "kube-controller-manager secure port"},
		{"127.0.0.1:10259", "kube-scheduler secure port"},
	}
	if !c.DisableAgent {
		ps = append(ps,
			port{"0.0.0.0:10250", "kubelet port"},
			port{"127.0.0.1:10248", "kubelet healthz port"},
			port{"127.0.0.1:10256", "kube-proxy healthz port"},
			port{"127.0.0.1:10249", "kube-proxy metrics port"},
			port{net.JoinHostPort(c.NodeIP.String(), "53"), "cluster DNS port (CoreDNS on the node IP)"},
			port{"127.0.0.1:8181", "CoreDNS ready port"},
			port{"127.0.0.1:8180", "CoreDNS health port"},
		)
	}
	if !c.AdvertiseIP.IsLoopback() {
		ps = append(ps, port{net.JoinHostPort(c.AdvertiseIP.String(), strconv.Itoa(etcd.ClientPort)), "etcd client port"})
	}
	return ps
}

// preflight checks what would make the server fail half-way, before
// anything is written: it must run as root, every port must be free, and
// flannel must find its interface.
func preflight(c Config) error {
	if os.Geteuid() != 0 {
		return errors.New("kedge server must run as root (it manages certificates under /var/lib and /etc, and later containers and networking)")
	}
	for _, p := range c.ports() {
		l, err := net.Listen("tcp", p.addr)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("%s: address %s already in use (is another kedge or Kubernetes running?)", p.what, p.addr)
			}
			return fmt.Errorf("%s: cannot listen on %s: %w", p.what, p.addr, err)
		}
		l.Close()
	}
	if !c.DisableAgent && c.FlannelBackend != flannel.None {
		// The interface holding --node-ip, or --flannel-iface, with a usable IPv4 address.
		if _, err := flannel.ExternalInterface(c.FlannelIface, c.NodeIP); err != nil {
			return err
		}
	}
	return nil
}
