package server

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"path/filepath"

	"github.com/kedge-io/kedge/pkg/agent"
	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/embedded"
	"github.com/kedge-io/kedge/pkg/hostinfo"
	"github.com/kedge-io/kedge/pkg/nodemeta"
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
		ServiceCIDR:    cfg.ServiceCIDR.String(),
		ClusterDNS:     cfg.ClusterDNS,
		ClusterDomain:  cfg.ClusterDomain,
		NodeMeta:       nodemeta.Spec{Labels: maps.Clone(cfg.NodeMeta.Labels), Taints: cfg.NodeMeta.Taints, ExternalIPs: cfg.NodeMeta.ExternalIPs},
		KubeletArgs:    cfg.KubeletArgs,
		KubeProxyArgs:  cfg.KubeProxyArgs,
		FlannelBackend: cfg.FlannelBackend,
		FlannelIface:   cfg.FlannelIface,
		Disabled:       cfg.Disable,
		LocalStorage:   cfg.LocalStoragePath,
		Host:           hostinfo.Detect(),
		Debug:          cfg.Debug,
		Registries:     cfg.Registries,
	}
	nb, err := pki.IssueNode(certs, nodePKI(cfg))
	if err != nil {
		return node, err
	}
	node.Certs = nb
	if node.NodeMeta.Labels == nil {
		node.NodeMeta.Labels = map[string]string{}
	}
	node.NodeMeta.Labels[nodemeta.ControlPlaneLabel] = "true"
	node.NodeMetaApply = nodemeta.AdminApply(newAdminClient(cfg.adminKubeconfig()))
	if err := agent.WriteKubeconfigs(&node, admin.Server); err != nil {
		return node, err
	}
	return node, nil
}

// nodePKI says which certificates the server's own node needs.
func nodePKI(cfg Config) pki.NodeConfig {
	return pki.NodeConfig{
		Dir:      filepath.Join(agent.Config{DataDir: cfg.DataDir}.Dir(), "tls"),
		NodeName: cfg.NodeName,
		NodeIPs:  []net.IP{cfg.NodeIP},
		Validity: cfg.CertValidity,
	}
}

// nodeRuntime prepares the server's own node: its config and, in a
// sequence the server starts alongside etcd, what needs no API: the
// extraction of the embedded helpers, then agent.Runtime (containerd, its
// images). Without an agent (--disable-agent) the sequence is nil.
func nodeRuntime(cfg Config, certs pki.Bundle, admin pki.KubeconfigOptions, log *slog.Logger) (agent.Config, *component.Sequence, error) {
	if cfg.DisableAgent {
		return agent.Config{}, nil, nil
	}
	node, err := nodeConfig(cfg, certs, admin, log)
	if err != nil {
		return node, nil, err
	}
	assets, err := embedded.Locate(cfg.DataDir)
	if err != nil {
		return node, nil, err
	}
	rt := component.NewSequence("node runtime", log, &extractAssets{dataDir: cfg.DataDir})
	for _, c := range agent.Runtime(node, assets, log) {
		rt.Add(c)
	}
	return node, rt, nil
}

// extractAssets writes the embedded helpers (runc, the shim, the CNI
// plugins, the pause image) under the data dir, before containerd starts.
type extractAssets struct{ dataDir string }

var _ component.Component = (*extractAssets)(nil)

// Name implements component.Component.
func (*extractAssets) Name() string { return "helpers" }

// Start extracts the helpers (only checks them when already extracted).
func (e *extractAssets) Start(context.Context) error {
	_, err := embedded.Extract(e.dataDir)
	return err
}

// Ready implements component.Component: Start did the work.
func (*extractAssets) Ready(context.Context) error { return nil }

// Stop implements component.Component; the files stay.
func (*extractAssets) Stop(context.Context) error { return nil }
