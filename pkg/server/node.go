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
	}
	if node.Host.CgroupV1 {
		log.Warn("cgroup v1 host: the kubelet runs with failCgroupV1=false; cgroup v2 is recommended", "component", "agent")
	}
	if !node.Host.CanRaiseOOMPriority {
		log.Warn("no CAP_SYS_RESOURCE: containerd restricts oom_score_adj so that runc can start pods", "component", "agent")
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
	etc := filepath.Join(node.Dir(), "etc")
	node.KubeletKubeconfig = filepath.Join(etc, "kubelet.kubeconfig")
	node.KubeProxyKubeconfig = filepath.Join(etc, "kube-proxy.kubeconfig")
	node.CoreDNSKubeconfig = filepath.Join(etc, "coredns.kubeconfig")
	node.AdminKubeconfig = filepath.Join(cfg.credDir(), "admin.kubeconfig")
	for path, cred := range map[string][2]string{
		node.KubeletKubeconfig:   {nb.KubeletClientCert, nb.KubeletClientKey},
		node.KubeProxyKubeconfig: {nb.KubeProxyCert, nb.KubeProxyKey},
		node.CoreDNSKubeconfig:   {nb.CoreDNSCert, nb.CoreDNSKey},
	} {
		o := pki.KubeconfigOptions{Server: admin.Server, CAFile: nb.ServerCA, CertFile: cred[0], KeyFile: cred[1], User: "node"}
		if err := pki.WriteKubeconfig(path, 0o600, o); err != nil {
			return node, err
		}
	}
	return node, nil
}
