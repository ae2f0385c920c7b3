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

	"github.com/cloudnativelabs/kube-router/v2/pkg/healthcheck"
	"github.com/coreos/go-iptables/iptables"

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
	if v6 {
		// kube-router v2.1.0's ip6tables rules name a set without the
		// "inet6:" prefix its IPv6 handler creates it under, so
		// ip6tables-restore fails ("Set KUBE-SRC-… doesn't exist") and
		// every sync aborts (fixed in v2.1.1, not served). The handler
		// here could create IPv6 sets under the plain names (kube-router
		// hashes the family into them), but kedge's pod network (flannel,
		// pkg/flannel.NetConf) is IPv4 only: there are no IPv6 pods to
		// enforce for, nor a cluster to test it in (docs/networkpolicy.md).
		return false, false, nil, fmt.Errorf("--service-cidr %s: NetworkPolicies are enforced for IPv4 only (kube-router v2.1.0's IPv6 rules name the wrong ipsets); run with --disable %s", serviceCIDR, AddonName)
	}
	return v4, v6, cidrs, nil
}

// Start checks the service CIDR and iptables, then, in the background,
// waits for the node's Node, builds the controller and runs it.
func (c *Controller) Start(ctx context.Context) error {
	// Fail at once where nothing can work; the rest waits for the Node.
	if _, _, _, err := families(c.cfg.ServiceCIDR); err != nil {
		return err
	}
	if _, err := checkIPTables(iptables.ProtocolIPv4); err != nil {
		return err
	}
	c.Context(ctx)
	c.Go(func(ctx context.Context) error {
		b, err := build(ctx, c.cfg)
		if err != nil {
			return err
		}
		npc, factory := b.npc, b.factory
		if _, err := b.pods.AddEventHandler(whilePolicies{handler: npc.PodEventHandler, policies: b.policies.GetStore()}); err != nil {
			return err
		}
		if _, err := b.namespaces.AddEventHandler(npc.NamespaceEventHandler); err != nil {
			return err
		}
		if _, err := b.policies.AddEventHandler(npc.NetworkPolicyEventHandler); err != nil {
			return err
		}
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
	case <-ctx.Done(): // also when the run fails: the manager watches Err
		return ctx.Err()
	}
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
