// Package agent is the composition root of a node: it adds, in start order,
// the components every node runs in the kedge process (hostprep: the host
// checks and cgroup remounts a node container needs; containerd, the
// pause image, the image importer, kubelet, flannel (the pod network, unless
// --flannel-backend=none), kube-proxy, CoreDNS). A server adds them after its
// control plane; `kedge agent` runs them alone.
//
//	agent.AddComponents(manager, cfg, assets, log)
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"

	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/containerd"
	"github.com/kedge-io/kedge/pkg/coredns"
	"github.com/kedge-io/kedge/pkg/embedded"
	"github.com/kedge-io/kedge/pkg/flannel"
	"github.com/kedge-io/kedge/pkg/hostinfo"
	"github.com/kedge-io/kedge/pkg/hostprep"
	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/kubelet"
	"github.com/kedge-io/kedge/pkg/kubeproxy"
	"github.com/kedge-io/kedge/pkg/localstorage"
	"github.com/kedge-io/kedge/pkg/netpol"
	"github.com/kedge-io/kedge/pkg/nodemeta"
	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/registries"
	"github.com/kedge-io/kedge/pkg/servicelb"
	"github.com/kedge-io/kedge/pkg/upgrade"
	"github.com/kedge-io/kedge/pkg/version"
)

// RunDir holds the node's sockets and runtime state.
const RunDir = "/run/kedge"

// Config is what a node needs to know.
type Config struct {
	DataDir       string
	NodeName      string
	NodeIP        net.IP
	ClusterCIDR   string
	ServiceCIDR   string // --service-cidr; empty from an older server: no NetworkPolicy enforcement
	ClusterDNS    net.IP
	ClusterDomain string
	// Certs are the node's certificates (pki.IssueNode); the kubeconfigs
	// below use them.
	Certs               pki.NodeBundle
	KubeletKubeconfig   string
	KubeProxyKubeconfig string
	CoreDNSKubeconfig   string
	// NodeMeta are the Node's labels and taints (--node-label,
	// --node-taint; servers add node-role.kubernetes.io/control-plane): the
	// kubelet registers the Node with those it may set, and NodeMetaApply
	// keeps all of them in sync on every start: with admin credentials on a
	// server, through the supervisor on an agent.
	NodeMeta      nodemeta.Spec
	NodeMetaApply nodemeta.Apply
	KubeletArgs   []string // --kubelet-arg
	KubeProxyArgs []string // --kube-proxy-arg
	// FlannelBackend is the pod network between nodes (--flannel-backend);
	// None: kedge configures no pod network, the user installs a CNI.
	FlannelBackend flannel.Backend
	FlannelIface   string // --flannel-iface; empty: the interface holding NodeIP
	// Disabled are the cluster's --disable add-ons: "coredns" leaves CoreDNS
	// out, "servicelb" the LoadBalancer announcer, "network-policy" the
	// NetworkPolicy controller, "local-storage" the local-path volumes'
	// directories.
	Disabled []string
	// LocalStorage is --default-local-storage-path: the directory of this
	// node's local-path volumes.
	LocalStorage string
	// Servers are the apiservers (host:port) an agent balances over; empty
	// on a server, whose node talks to its own apiserver.
	Servers []string
	Host    hostinfo.Host
	Debug   bool
	// Registries are the node's mirrors and registry credentials
	// (--private-registry).
	Registries registries.Registries
	// CSIGuard, on a server's node, keeps the kubelet's CSI plugin ahead of
	// the in-process controller-manager's (kubelet.CSIGuard).
	CSIGuard *kubelet.CSIGuard
}

// Dir is the node's state directory, <data-dir>/agent.
func (c Config) Dir() string { return filepath.Join(c.DataDir, "agent") }

// ContainerdAddress is the gRPC (and CRI) socket of the node's containerd.
func ContainerdAddress() string { return filepath.Join(RunDir, "containerd", "containerd.sock") }

// ImageProxyAddress is the CRI image service of the node's image proxy,
// which the kubelet uses when a registry mirror rewrites names.
func ImageProxyAddress() string { return filepath.Join(RunDir, "containerd", "images.sock") }

// AddComponents adds the node's components to m in start order: its
// Runtime, then the rest (AddNode).
func AddComponents(m *component.Manager, cfg Config, assets embedded.Assets, log *slog.Logger) {
	for _, c := range Runtime(cfg, assets, log) {
		m.Add(c)
	}
	AddNode(m, cfg, log)
}

// Runtime returns, in start order, the node's components that need no
// API: the host's preparation, containerd and its images. A server starts
// them alongside its control plane (component.Sequence).
func Runtime(cfg Config, assets embedded.Assets, log *slog.Logger) []component.Component {
	cniConf := cniConfDir(cfg)
	address := ContainerdAddress()
	registryDir := filepath.Join(cfg.Dir(), "etc", "containerd", "certs.d")
	return []component.Component{
		hostprep.New(hostprep.Config{Log: log}),
		containerd.New(containerd.Config{
			Root:         filepath.Join(cfg.Dir(), "containerd"),
			State:        filepath.Join(RunDir, "containerd"),
			Address:      address,
			BinDir:       assets.BinDir,
			CNIBinDir:    assets.BinDir,
			CNIConfDir:   cniConf,
			RegistryDir:  registryDir,
			Registries:   cfg.Registries,
			SandboxImage: assets.PauseImage,
			Host:         cfg.Host,
			Debug:        cfg.Debug,
			Log:          log,
		}),
		&pauseImage{address: address, tarball: assets.PauseImageTar, ref: assets.PauseImage},
		containerd.NewImageImporter(containerd.ImporterConfig{
			Dir:     filepath.Join(cfg.Dir(), "images"),
			Address: address,
			Log:     log,
		}),
		// Does nothing unless a mirror rewrites names (containerd cannot).
		registries.NewImageProxy(registries.ProxyConfig{Registries: cfg.Registries, HostDir: registryDir,
			Socket: ImageProxyAddress(), Containerd: address, Namespace: containerd.Namespace, Log: log}),
	}
}

// cniConfDir is where flannel writes the CNI config containerd reads.
func cniConfDir(cfg Config) string { return filepath.Join(cfg.Dir(), "etc", "cni", "net.d") }

// AddNode adds to m, in start order, the node's components after its
// Runtime: the kubelet and what needs the API.
func AddNode(m *component.Manager, cfg Config, log *slog.Logger) {
	cniConf := cniConfDir(cfg)
	address := ContainerdAddress()
	imageEndpoint := "" // the kubelet pulls from containerd, or through the proxy for rewrites
	if cfg.Registries.HasRewrites() {
		imageEndpoint = ImageProxyAddress()
	}
	for _, c := range []component.Component{
		kubelet.New(kubelet.Config{
			CSIGuard:                 cfg.CSIGuard,
			NodeName:                 cfg.NodeName,
			NodeIP:                   cfg.NodeIP,
			Kubeconfig:               cfg.KubeletKubeconfig,
			ClientCAFile:             cfg.Certs.ClientCA,
			ServingCert:              cfg.Certs.KubeletServingCert,
			ServingKey:               cfg.Certs.KubeletServingKey,
			ContainerRuntimeEndpoint: address,
			ImageServiceEndpoint:     imageEndpoint,
			ClusterDNS:               []net.IP{cfg.ClusterDNS},
			ClusterDomain:            cfg.ClusterDomain,
			Host:                     cfg.Host,
			NodeLabels:               cfg.NodeMeta.Labels,
			RegisterWithTaints:       cfg.NodeMeta.Taints,
			ExternalCloudProvider:    len(cfg.NodeMeta.ExternalIPs) > 0,
			ResolvConf:               kubelet.HostResolvConf(),
			ExtraArgs:                cfg.KubeletArgs,
			Log:                      log,
		}),
	} {
		m.Add(c)
	}
	if cfg.FlannelBackend != flannel.None {
		// flannel needs the kubelet's Node, not the kubelet's readiness:
		// it starts with the kubelet (in its stage: before the node
		// metadata's), so that its subnet manager, which checks its
		// informer once a second, is built meanwhile.
		m.AddAlongside(flannel.New(flannel.Config{
			NodeName:    cfg.NodeName,
			NodeIP:      cfg.NodeIP,
			Iface:       cfg.FlannelIface,
			Backend:     cfg.FlannelBackend,
			ClusterCIDR: cfg.ClusterCIDR,
			Kubeconfig:  cfg.KubeletKubeconfig,
			Dir:         filepath.Join(cfg.Dir(), "etc", "flannel"),
			CNIConfDir:  cniConf,
			Log:         log,
		}))
	}
	m.Add(nodemeta.NewSyncer(nodemeta.SyncerConfig{
		NodeName:  cfg.NodeName,
		Spec:      cfg.NodeMeta,
		Apply:     cfg.NodeMetaApply,
		Permanent: join.Permanent,
		Log:       log,
	}))
	m.Add(kubeproxy.New(kubeproxy.Config{
		NodeName:    cfg.NodeName,
		NodeIP:      cfg.NodeIP,
		Kubeconfig:  cfg.KubeProxyKubeconfig,
		ClusterCIDR: cfg.ClusterCIDR,
		ExtraArgs:   cfg.KubeProxyArgs,
		Log:         log,
	}))
	if !slices.Contains(cfg.Disabled, "servicelb") {
		m.Add(servicelb.NewAnnouncer(servicelb.AnnouncerConfig{
			NodeName: cfg.NodeName, NodeIP: cfg.NodeIP, Kubeconfig: cfg.KubeProxyKubeconfig, Log: log,
		}))
	}
	if !slices.Contains(cfg.Disabled, localstorage.Addon) {
		m.Add(localstorage.NewNode(localstorage.NodeConfig{NodeName: cfg.NodeName, Root: cfg.LocalStorage, Kubeconfig: cfg.KubeletKubeconfig, Log: log}))
	}
	if npc := (netpol.Config{NodeName: cfg.NodeName, Kubeconfig: cfg.KubeProxyKubeconfig, ServiceCIDR: cfg.ServiceCIDR, Log: log}); slices.Contains(cfg.Disabled, netpol.AddonName) {
		m.Add(netpol.NewCleanup(npc))
	} else if cfg.ServiceCIDR != "" {
		m.Add(netpol.New(npc))
	}
	// Carries out the upgrade controller's plan for this node (pkg/upgrade).
	m.Add(upgrade.NewUpgrader(upgrade.NodeConfig{
		NodeName: cfg.NodeName, Kubeconfig: cfg.KubeletKubeconfig, Version: version.Get(), Dir: filepath.Join(cfg.Dir(), "upgrade"), Log: log,
	}))
	if slices.Contains(cfg.Disabled, "coredns") {
		return
	}
	m.Add(coredns.New(coredns.Config{
		NodeName:      cfg.NodeName,
		NodeIP:        cfg.NodeIP,
		ClusterDomain: cfg.ClusterDomain,
		Kubeconfig:    cfg.CoreDNSKubeconfig,
		ResolvConf:    kubelet.HostResolvConf(),
		Log:           log,
	}))
}

// pauseImage imports the embedded pause image and pins it, so that pod
// sandboxes never need a registry and image GC never removes it.
type pauseImage struct {
	address, tarball, ref string
}

func (*pauseImage) Name() string { return "pause-image" }

func (p *pauseImage) Start(ctx context.Context) error {
	if _, err := containerd.ImportFile(ctx, p.address, p.tarball); err != nil {
		return fmt.Errorf("import %s: %w", p.tarball, err)
	}
	return containerd.Pin(ctx, p.address, p.ref)
}

func (*pauseImage) Ready(context.Context) error { return nil }
func (*pauseImage) Stop(context.Context) error  { return nil }
