// Package netpol enforces Kubernetes NetworkPolicies on a node, in the kedge
// process: kube-router's network policy controller (the one k3s embeds),
// run as a library, writes iptables rules (KUBE-ROUTER-INPUT/FORWARD/OUTPUT,
// KUBE-POD-FW-*, KUBE-NWPLCY-*) and ipsets of the selected pods' addresses.
// The ipsets go to the kernel over netlink (ipset.go): kedge ships no ipset
// program. iptables is the node's own (as kube-proxy's), nft-backed or
// legacy.
//
//	m.Add(netpol.New(netpol.Config{NodeName: "w1", Kubeconfig: kubeProxyKubeconfig,
//		ServiceCIDR: "10.43.0.0/16", Log: log}))
package netpol

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/cloudnativelabs/kube-router/v2/pkg/controllers/netpol"
	"github.com/cloudnativelabs/kube-router/v2/pkg/healthcheck"
	"github.com/cloudnativelabs/kube-router/v2/pkg/options"
	"github.com/cloudnativelabs/kube-router/v2/pkg/utils"
	"github.com/coreos/go-iptables/iptables"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kedge-io/kedge/pkg/component"
)

// NodePortRange is the apiserver's default --service-node-port-range:
// kube-router lets traffic to those ports of the node through to
// kube-proxy.
const NodePortRange = "30000-32767"

// SyncPeriod is how often the controller rewrites all its rules even
// without a change (it reacts to Pod, Namespace and NetworkPolicy events
// at once).
const SyncPeriod = 5 * time.Minute

// Config describes the policy controller of one node.
type Config struct {
	NodeName string
	// Kubeconfig is kube-proxy's: it lists Pods, Namespaces and
	// NetworkPolicies and gets its Node (manifests/network-policy.yaml).
	Kubeconfig string
	// ServiceCIDR is the cluster's --service-cidr (one IPv4 and/or one
	// IPv6 prefix, comma-separated).
	ServiceCIDR string
	Log         *slog.Logger
}

// Controller runs the policy controller.
type Controller struct {
	cfg Config
	component.Background
	synced chan struct{}
}

var _ component.Component = (*Controller)(nil)

// New returns the controller; nothing runs until Start.
func New(cfg Config) *Controller { return &Controller{cfg: cfg, synced: make(chan struct{})} }

// Name implements component.Component.
func (*Controller) Name() string { return "network-policy" }

// families returns the IP families of the service CIDR.
func families(serviceCIDR string) (v4, v6 bool, cidrs []string, err error) {
	for _, s := range splitComma(serviceCIDR) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return false, false, nil, fmt.Errorf("service CIDR %q: %w", s, err)
		}
		if p.Addr().Is4() {
			v4 = true
		} else {
			v6 = true
		}
		cidrs = append(cidrs, p.String())
	}
	if len(cidrs) == 0 {
		return false, false, nil, errors.New("no service CIDR: the node needs the cluster's --service-cidr")
	}
	return v4, v6, cidrs, nil
}

// Start checks iptables and ip_set, builds the controller (it reads its
// Node) and runs it in the background.
func (c *Controller) Start(ctx context.Context) error {
	v4, v6, cidrs, err := families(c.cfg.ServiceCIDR)
	if err != nil {
		return err
	}
	rest, err := clientcmd.BuildConfigFromFlags("", c.cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", c.cfg.Kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return err
	}
	iptablesHandlers := map[v1.IPFamily]utils.IPTablesHandler{}
	ipsetHandlers := map[v1.IPFamily]utils.IPSetHandler{}
	for _, f := range []struct {
		on     bool
		family v1.IPFamily
		proto  iptables.Protocol
	}{{v4, v1.IPv4Protocol, iptables.ProtocolIPv4}, {v6, v1.IPv6Protocol, iptables.ProtocolIPv6}} {
		if !f.on {
			continue
		}
		// kube-router exits the process (klog.Fatal) when an iptables
		// command fails: the same commands are tried here first, so that a
		// node without a working iptables fails this component instead.
		ipt, err := checkIPTables(f.proto)
		if err != nil {
			return err
		}
		sets, err := newIPSets(f.family == v1.IPv6Protocol, c.cfg.Log)
		if err != nil {
			return err
		}
		iptablesHandlers[f.family], ipsetHandlers[f.family] = ipt, sets
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	pods := factory.Core().V1().Pods().Informer()
	namespaces := factory.Core().V1().Namespaces().Informer()
	policies := factory.Networking().V1().NetworkPolicies().Informer()
	krConfig := &options.KubeRouterConfig{
		ClusterIPCIDRs:     cidrs,
		EnableIPv4:         v4,
		EnableIPv6:         v6,
		HostnameOverride:   c.cfg.NodeName,
		NodePortRange:      NodePortRange,
		IPTablesSyncPeriod: SyncPeriod,
	}
	npc, err := netpol.NewNetworkPolicyController(client, krConfig, pods, policies, namespaces,
		&sync.Mutex{}, iptablesHandlers, ipsetHandlers)
	if err != nil {
		return fmt.Errorf("kube-router policy controller: %w", err)
	}
	if _, err := pods.AddEventHandler(npc.PodEventHandler); err != nil {
		return err
	}
	if _, err := namespaces.AddEventHandler(npc.NamespaceEventHandler); err != nil {
		return err
	}
	if _, err := policies.AddEventHandler(npc.NetworkPolicyEventHandler); err != nil {
		return err
	}
	c.Context(ctx)
	c.Go(func(ctx context.Context) error {
		factory.Start(ctx.Done())
		defer factory.Shutdown()
		factory.WaitForCacheSync(ctx.Done())
		if ctx.Err() != nil {
			return nil
		}
		// The controller sends a heartbeat as each full sync begins and
		// runs one sync at a time: a second sync, requested once the
		// first begins, begins when the first has written its rules.
		health := make(chan *healthcheck.ControllerHeartbeat, 1)
		var wg sync.WaitGroup
		wg.Add(1)
		go npc.Run(health, ctx.Done(), &wg)
		for beats := 0; ; {
			select {
			case <-ctx.Done():
				// Heartbeats are sent blocking: keep reading them
				// until the controller's goroutines have returned.
				done := make(chan struct{})
				go func() { wg.Wait(); close(done) }()
				for {
					select {
					case <-done:
						return nil
					case <-health:
					}
				}
			case <-health:
				beats++
				switch beats {
				case 1:
					npc.RequestFullSync()
				case 2:
					close(c.synced)
					c.cfg.Log.Info("network policies enforced", "node", c.cfg.NodeName)
				}
			}
		}
	})
	return nil
}

// Ready returns once the first full sync has written the rules.
func (c *Controller) Ready(ctx context.Context) error {
	select {
	case <-c.synced:
		return nil
	case err := <-c.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkIPTables returns the iptables handler of proto once the filter
// table can be listed.
func checkIPTables(proto iptables.Protocol) (*iptables.IPTables, error) {
	ipt, err := iptables.NewWithProtocol(proto)
	if err != nil {
		return nil, fmt.Errorf("iptables (needed for NetworkPolicies, as for kube-proxy): %w; install iptables or run with --disable %s", err, AddonName)
	}
	if _, err := ipt.ListChains("filter"); err != nil {
		return nil, fmt.Errorf("iptables cannot list the filter table: %w; run with --disable %s to leave NetworkPolicies unenforced", err, AddonName)
	}
	return ipt, nil
}

// AddonName is the name --disable turns this component off with.
const AddonName = "network-policy"

// splitComma splits a comma-separated list, dropping empty items.
func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}
