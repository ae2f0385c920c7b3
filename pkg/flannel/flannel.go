package flannel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/flannel-io/flannel/pkg/backend"
	_ "github.com/flannel-io/flannel/pkg/backend/hostgw" // registers "host-gw"
	_ "github.com/flannel-io/flannel/pkg/backend/vxlan"  // registers "vxlan"
	"github.com/flannel-io/flannel/pkg/subnet"
	"github.com/flannel-io/flannel/pkg/subnet/kube"
	"github.com/flannel-io/flannel/pkg/trafficmngr/iptables"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kedge-io/kedge/pkg/component"
)

// AnnotationPrefix is the prefix of the Node annotations flannel publishes.
const AnnotationPrefix = "flannel.alpha.coreos.com"

// resyncSeconds is how often flannel re-checks its iptables rules (flanneld's
// --iptables-resync default).
const resyncSeconds = 5

// Config describes one node's pod network.
type Config struct {
	NodeName string
	// NodeIP is the node's address; unless Iface is set, the interface that
	// holds it carries the pod traffic between nodes, and it is the address
	// flannel publishes (public-ip).
	NodeIP net.IP
	// Iface (--flannel-iface) names the interface that carries the pod
	// traffic between nodes; its first IPv4 address (NodeIP if it holds it)
	// is published. Empty means the interface holding NodeIP.
	Iface       string
	Backend     Backend // VXLAN (also when empty) or HostGW
	ClusterCIDR string  // --cluster-cidr; every node's pod CIDR lies inside it
	// Kubeconfig is the kubelet's: see the package documentation.
	Kubeconfig string
	// Dir holds flannel's files: net-conf.json (the network configuration
	// kedge renders) and subnet.env (what flannel set up last time, so that
	// stale masquerade rules are removed when the cluster CIDR changes).
	Dir        string
	CNIConfDir string // containerd's CNI conf dir
	Bridge     string // bridge interface name, default cni0
	Log        *slog.Logger
}

// Flannel is the pod network component.
type Flannel struct {
	component.Background
	cfg   Config
	ready chan struct{}
}

var _ component.Component = (*Flannel)(nil)
var _ component.Failer = (*Flannel)(nil)

// New returns the component; nothing runs until Start.
func New(cfg Config) *Flannel {
	if cfg.Bridge == "" {
		cfg.Bridge = "cni0"
	}
	if cfg.Backend == "" {
		cfg.Backend = VXLAN
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Flannel{cfg: cfg, ready: make(chan struct{})}
}

// Name implements component.Component.
func (*Flannel) Name() string { return "flannel" }

// Start checks the configuration and the host, writes net-conf.json and
// runs flannel in the background (see the package documentation).
func (f *Flannel) Start(ctx context.Context) error {
	if f.cfg.Backend != VXLAN && f.cfg.Backend != HostGW {
		return fmt.Errorf("backend %q: want %s or %s", f.cfg.Backend, VXLAN, HostGW)
	}
	if err := checkBridgeNetfilter(); err != nil {
		return err
	}
	ext, err := ExternalInterface(f.cfg.Iface, f.cfg.NodeIP)
	if err != nil {
		return err
	}
	conf, err := NetConf(f.cfg.Backend, f.cfg.ClusterCIDR)
	if err != nil {
		return err
	}
	if err := writeAtomic(f.netConfPath(), conf); err != nil {
		return err
	}
	rest, err := clientcmd.BuildConfigFromFlags("", f.cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", f.cfg.Kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return err
	}
	f.Context(ctx)
	f.Go(func(ctx context.Context) error { return f.run(ctx, client, ext) })
	return nil
}

// Ready waits until the backend is up and the CNI configuration is written.
func (f *Flannel) Ready(ctx context.Context) error {
	select {
	case <-f.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for node %s's pod network: %w", f.cfg.NodeName, ctx.Err())
	}
}

// Stop ends flannel's goroutines (its context) and waits for them. The
// interfaces, routes and iptables rules stay for the running pods.
func (f *Flannel) Stop(ctx context.Context) error { return f.Background.Stop(ctx) }

func (f *Flannel) netConfPath() string    { return filepath.Join(f.cfg.Dir, "net-conf.json") }
func (f *Flannel) subnetFilePath() string { return filepath.Join(f.cfg.Dir, "subnet.env") }

// run is flanneld's main, for one node with the kube subnet manager: it
// returns when ctx ends or flannel fails.
func (f *Flannel) run(ctx context.Context, client kubernetes.Interface, ext *backend.ExternalInterface) error {
	// flannel's kube subnet manager takes the node's name only from the
	// environment; one flannel runs per process, so this is its only writer.
	if err := os.Setenv("NODE_NAME", f.cfg.NodeName); err != nil {
		return err
	}
	// The subnet manager checks its node informer once a second until it
	// has synced: build it while the Node waits for its pod CIDR.
	type built struct {
		sm  subnet.Manager
		err error
	}
	smc := make(chan built, 1)
	go func() {
		sm, err := kube.NewSubnetManager(ctx, "", f.cfg.Kubeconfig, AnnotationPrefix, f.netConfPath(), true)
		smc <- built{sm, err}
	}()
	if err := waitNode(ctx, client, f.cfg.NodeName); err != nil {
		<-smc
		return err
	}
	b := <-smc
	if b.err != nil {
		return fmt.Errorf("kube subnet manager: %w", b.err)
	}
	sm := b.sm
	config, err := sm.GetNetworkConfig(ctx)
	if err != nil {
		return fmt.Errorf("network config: %w", err)
	}

	// wg holds the backend's goroutines; every one of them ends with ctx.
	var wg sync.WaitGroup
	defer wg.Wait()
	be, err := backend.NewManager(ctx, sm, ext).GetBackend(config.BackendType)
	if err != nil {
		return err
	}
	bn, err := registerNetwork(ctx, be, &wg, config)
	if err != nil {
		return fmt.Errorf("%s backend: %w", config.BackendType, err)
	}
	lease := bn.Lease()

	prevNetwork, prevSubnet := readSubnetFile(f.subnetFilePath())
	tm := &iptables.IPTablesManager{}
	if err := tm.Init(ctx); err != nil {
		return err
	}
	err = tm.SetupAndEnsureMasqRules(ctx,
		config.Network, prevSubnet, prevNetwork,
		config.IPv6Network, config.IPv6Network, config.IPv6Network,
		lease, resyncSeconds, false)
	if err != nil {
		return fmt.Errorf("masquerade rules: %w", err)
	}
	tm.SetupAndEnsureForwardRules(ctx, config.Network, config.IPv6Network, resyncSeconds)
	if err := sm.HandleSubnetFile(f.subnetFilePath(), config, true, lease.Subnet, lease.IPv6Subnet, bn.MTU()); err != nil {
		return fmt.Errorf("write %s: %w", f.subnetFilePath(), err)
	}

	podCIDR := lease.Subnet.ToIPNet()
	if err := WriteCNIConfig(f.cfg.CNIConfDir, CNIConfig{Bridge: f.cfg.Bridge, Subnet: podCIDR, MTU: bn.MTU()}); err != nil {
		return err
	}
	f.cfg.Log.Info("pod network ready", "component", "flannel", "backend", config.BackendType,
		"iface", ext.IfaceName, "public_ip", ext.ExtAddr, "pod_cidr", podCIDR, "mtu", bn.MTU(),
		"cni_conf", filepath.Join(f.cfg.CNIConfDir, CNIConfFile))
	close(f.ready)

	wg.Add(1)
	go func() {
		defer wg.Done()
		bn.Run(ctx)
	}()
	// CompleteLease marks the Node's network available (NetworkUnavailable=false).
	if err := sm.CompleteLease(ctx, lease, &wg); err != nil && ctx.Err() == nil {
		f.cfg.Log.Warn("could not mark the node's network available", "component", "flannel", "err", err)
	}
	<-ctx.Done()
	return ctx.Err()
}

// waitNode polls the Node until flannel's kube subnet manager can take its
// lease from it: the controller-manager has set its pod CIDR (flannel fails
// without), and it has annotations (flannel writes into the map, and panics
// if it is nil; the kubelet registers its Node with one, and the TTL
// controller adds another).
func waitNode(ctx context.Context, client kubernetes.Interface, name string) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil && node.Spec.PodCIDR != "" && len(node.Annotations) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for node %s to get a pod CIDR: %w", name, ctx.Err())
		case <-tick.C:
		}
	}
}

// registerNetwork takes the node's lease through the backend. The subnet
// manager reads the Node from its informer, which may not have seen the pod
// CIDR that waitNode read from the API a moment before: that refusal is
// retried for a few seconds.
func registerNetwork(ctx context.Context, be backend.Backend, wg *sync.WaitGroup, config *subnet.Config) (backend.Network, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		bn, err := be.RegisterNetwork(ctx, wg, config)
		if err == nil || !strings.Contains(err.Error(), "pod cidr not assigned") || time.Now().After(deadline) {
			return bn, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkBridgeNetfilter makes sure bridged pod traffic goes through iptables
// (kube-proxy's Service rules, flannel's rules): the br_netfilter module
// must be loaded. flanneld refuses to start without it too.
func checkBridgeNetfilter() error {
	const path = "/proc/sys/net/bridge/bridge-nf-call-iptables"
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return fmt.Errorf("%s is missing: load the br_netfilter kernel module (modprobe br_netfilter)", path)
}

// writeAtomic writes path through a temporary file and a rename, unless it
// already holds data.
func writeAtomic(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
