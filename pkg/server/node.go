package server

import (
	"log/slog"
	"net"
	"path/filepath"

	"github.com/kedge-io/kedge/pkg/agent"
	"github.com/kedge-io/kedge/pkg/hostinfo"
	"github.com/kedge-io/kedge/pkg/pki"
)

// nodeConfig prepares the server's own node: its certificates (issued
// directly from the local CAs), kubeconfigs for the kubelet, kube-proxy and
// CoreDNS, and the host facts.
func nodeConfig(cfg Config, certs pki.Bundle, admin pki.KubeconfigOptions, log *slog.Logger) (agent.Config, error) {
	node := agent.Config{
		DataDir:        cfg.DataDir,
		NodeName:       cfg.NodeName,
		NodeIP:         cfg.NodeIP,
		ClusterCIDR:    cfg.ClusterCIDR.String(),
		ClusterDNS:     cfg.ClusterDNS,
		ClusterDomain:  cfg.ClusterDomain,
		NodeLabels:     map[string]string{"node-role.kubernetes.io/control-plane": "true"},
		KubeletArgs:    cfg.KubeletArgs,
		KubeProxyArgs:  cfg.KubeProxyArgs,
		FlannelBackend: cfg.FlannelBackend,
		FlannelIface:   cfg.FlannelIface,
		Host:           hostinfo.Detect(),
		Debug:          cfg.Debug,
		Registries:     cfg.Registries,
	}
	nb, err := pki.IssueNode(certs, pki.NodeConfig{
		Dir:      filepath.Join(node.Dir(), "tls"),
		NodeName: cfg.NodeName,
		NodeIPs:  []net.IP{cfg.NodeIP},
	})
	if err != nil {
		return node, err
	}
	node.Certs = nb
	node.AdminKubeconfig = cfg.adminKubeconfig()
	if err := agent.WriteKubeconfigs(&node, admin.Server); err != nil {
		return node, err
	}
	return node, nil
}
