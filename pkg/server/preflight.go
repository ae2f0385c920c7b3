package server

import (
	"errors"
	"net"
	"os"
	"slices"
	"strconv"

	"github.com/kedge-io/kedge/pkg/agent"
	"github.com/kedge-io/kedge/pkg/etcd"
	"github.com/kedge-io/kedge/pkg/flannel"
	"github.com/kedge-io/kedge/pkg/metricsserver"
)

// ports lists every address the server binds, for the preflight check.
func (c Config) ports() []agent.Port {
	https := net.JoinHostPort(c.BindAddress.String(), strconv.Itoa(c.HTTPSPort))
	ps := []agent.Port{
		{Addr: https, What: "--https-listen-port " + strconv.Itoa(c.HTTPSPort) + " (apiserver)"},
		{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(etcd.ClientPort)), What: "etcd client port"},
		{Addr: "127.0.0.1:2381", What: "etcd metrics port"},
		{Addr: net.JoinHostPort(c.AdvertiseIP.String(), strconv.Itoa(etcd.PeerPort)), What: "etcd peer port"},
		{Addr: "127.0.0.1:10257", What: "kube-controller-manager secure port"},
		{Addr: "127.0.0.1:10259", What: "kube-scheduler secure port"},
	}
	if !c.DisableAgent {
		ps = append(ps, agent.Ports(c.NodeIP)...)
	}
	if !c.AdvertiseIP.IsLoopback() {
		ps = append(ps, agent.Port{Addr: net.JoinHostPort(c.AdvertiseIP.String(), strconv.Itoa(etcd.ClientPort)), What: "etcd client port"})
	}
	if !slices.Contains(c.Disable, AddonMetricsServer) {
		ps = append(ps, agent.Port{Addr: net.JoinHostPort(c.BindAddress.String(), strconv.Itoa(metricsserver.Port)), What: "metrics-server port (--disable metrics-server frees it)"})
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
	if err := agent.CheckPorts(c.ports()); err != nil {
		return err
	}
	if !c.DisableAgent && c.FlannelBackend != flannel.None {
		// The interface holding --node-ip, or --flannel-iface, with a usable IPv4 address.
		if _, err := flannel.ExternalInterface(c.FlannelIface, c.NodeIP); err != nil {
			return err
		}
	}
	return nil
}

// DefaultPorts are the addresses a server with the default flags and node
// IP nodeIP binds (`kedge check-config`).
func DefaultPorts(nodeIP net.IP) []agent.Port {
	return Config{BindAddress: net.IPv4zero, HTTPSPort: 6443, NodeIP: nodeIP, AdvertiseIP: nodeIP}.ports()
}
