// Package podnet gives a node its pod network configuration: once the
// controller-manager has assigned the Node a pod CIDR, it writes the CNI
// configuration (bridge plugin, host-local IPAM over that CIDR, portmap)
// that containerd uses for every pod sandbox on the node. Cross-node routing
// (flannel's VXLAN or host-gw backend) builds on this.
//
//	n := podnet.New(podnet.Config{NodeName: "n1", Kubeconfig: kc, ConfDir: "/var/lib/kedge/agent/etc/cni/net.d"})
//	_ = n.Start(ctx)
//	_ = n.Ready(ctx) // the CNI config is written
package podnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kedge-io/kedge/pkg/component"
)

// ConfFile is the name of the CNI configuration kedge writes.
const ConfFile = "10-kedge.conflist"

// Config describes one node's pod network.
type Config struct {
	NodeName   string
	Kubeconfig string // a client allowed to get this node (the kubelet's or kube-proxy's)
	ConfDir    string // containerd's CNI conf dir
	Bridge     string // bridge interface name, default cni0
	MTU        int    // pod interface MTU; 0 means the bridge plugin's default
	Log        *slog.Logger
}

// PodNet is the pod network configuration component.
type PodNet struct {
	cfg     Config
	cancel  context.CancelFunc
	written chan struct{}
	errc    chan error
}

var _ component.Component = (*PodNet)(nil)
var _ component.Failer = (*PodNet)(nil)

// New returns the component; nothing runs until Start.
func New(cfg Config) *PodNet {
	if cfg.Bridge == "" {
		cfg.Bridge = "cni0"
	}
	return &PodNet{cfg: cfg, written: make(chan struct{}), errc: make(chan error, 1)}
}

// Name implements component.Component.
func (*PodNet) Name() string { return "pod-network" }

// Start waits in the background for the node's pod CIDR and writes the CNI
// configuration when it is known.
func (n *PodNet) Start(ctx context.Context) error {
	rest, err := clientcmd.BuildConfigFromFlags("", n.cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", n.cfg.Kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.cancel = cancel
	go func() {
		cidr, err := waitPodCIDR(runCtx, client, n.cfg.NodeName)
		if err != nil {
			if runCtx.Err() == nil {
				n.errc <- err
			}
			return
		}
		if err := WriteConfig(n.cfg.ConfDir, n.cfg.Bridge, cidr, n.cfg.MTU); err != nil {
			n.errc <- err
			return
		}
		n.cfg.Log.Info("pod network configured", "component", "pod-network", "pod_cidr", cidr, "conf", filepath.Join(n.cfg.ConfDir, ConfFile))
		close(n.written)
	}()
	return nil
}

// waitPodCIDR polls the Node until the controller-manager has set its pod CIDR.
func waitPodCIDR(ctx context.Context, client kubernetes.Interface, name string) (string, error) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil && node.Spec.PodCIDR != "" {
			return node.Spec.PodCIDR, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-tick.C:
		}
	}
}

// Ready waits until the CNI configuration is written.
func (n *PodNet) Ready(ctx context.Context) error {
	select {
	case <-n.written:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for node %s to get a pod CIDR: %w", n.cfg.NodeName, ctx.Err())
	}
}

// Err reports a failure to write the configuration.
func (n *PodNet) Err() <-chan error { return n.errc }

// Stop stops waiting; the configuration stays for the pods that use it.
func (n *PodNet) Stop(context.Context) error {
	if n.cancel != nil {
		n.cancel()
	}
	return nil
}

// WriteConfig writes the CNI configuration list for podCIDR into dir,
// atomically, unless an identical one is already there.
func WriteConfig(dir, bridge, podCIDR string, mtu int) error {
	_, subnet, err := net.ParseCIDR(podCIDR)
	if err != nil {
		return fmt.Errorf("pod CIDR %q: %w", podCIDR, err)
	}
	if bridge == "" {
		return errors.New("bridge name is empty")
	}
	defaultRoute := "0.0.0.0/0"
	if subnet.IP.To4() == nil {
		defaultRoute = "::/0"
	}
	bridgePlugin := map[string]any{
		"type":         "bridge",
		"bridge":       bridge,
		"isGateway":    true,
		"ipMasq":       true,
		"hairpinMode":  true,
		"forceAddress": true,
		"ipam": map[string]any{
			"type":   "host-local",
			"ranges": [][]map[string]string{{{"subnet": subnet.String()}}},
			"routes": []map[string]string{{"dst": defaultRoute}},
		},
	}
	if mtu > 0 {
		bridgePlugin["mtu"] = mtu
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "kedge",
		"plugins": []any{
			bridgePlugin,
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true},
		},
	}
	raw, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, ConfFile)
	if old, err := os.ReadFile(path); err == nil && string(old) == string(raw) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("CNI conf dir: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
