package netpol

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cloudnativelabs/kube-router/v2/pkg/controllers/netpol"
	"github.com/cloudnativelabs/kube-router/v2/pkg/options"
	"github.com/cloudnativelabs/kube-router/v2/pkg/utils"
	"github.com/coreos/go-iptables/iptables"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// built is kube-router's controller with the informers it reads.
type built struct {
	npc                        *netpol.NetworkPolicyController
	factory                    informers.SharedInformerFactory
	pods, namespaces, policies cache.SharedIndexInformer
}

// build checks iptables and ip_set and builds the controller; it reads
// the node's Node from the API, waiting for the kubelet to register it.
func build(ctx context.Context, cfg Config) (*built, error) {
	v4, v6, cidrs, err := families(cfg.ServiceCIDR)
	if err != nil {
		return nil, err
	}
	rest, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", cfg.Kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return nil, err
	}
	err = wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Nodes().Get(ctx, cfg.NodeName, metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for Node %s: %w", cfg.NodeName, err)
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
			return nil, err
		}
		sets, err := newIPSets(f.family == v1.IPv6Protocol, cfg.Log)
		if err != nil {
			return nil, err
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
		HostnameOverride:   cfg.NodeName,
		NodePortRange:      NodePortRange,
		IPTablesSyncPeriod: SyncPeriod,
	}
	npc, err := netpol.NewNetworkPolicyController(client, krConfig, pods, policies, namespaces,
		&sync.Mutex{}, iptablesHandlers, ipsetHandlers)
	if err != nil {
		return nil, fmt.Errorf("kube-router policy controller: %w", err)
	}
	return &built{npc: npc, factory: factory, pods: pods, namespaces: namespaces, policies: policies}, nil
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
