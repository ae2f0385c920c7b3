// Package cloudcontroller is kedge's cloud provider for machines that have
// no cloud: it runs upstream's cloud node controller
// (k8s.io/cloud-provider/controllers/node) with a provider whose only
// knowledge of an instance is what the node itself declared, so that a
// node's --node-external-ip reaches Node.status.addresses as ExternalIP.
//
// The kubelet cannot report an external address itself: without a cloud
// provider it rewrites the Node's addresses from --node-ip on every status
// update. A node with --node-external-ip therefore runs its kubelet with
// --cloud-provider=external: it registers with the
// node.cloudprovider.kubernetes.io/uninitialized taint and the
// alpha.kubernetes.io/provided-node-ip annotation and leaves the addresses
// to this controller, which initializes the Node (removes the taint, sets
// the provider ID kedge://<name>) and keeps its addresses: the provided
// InternalIP, the ExternalIPs of the Node's nodemeta.ExternalIPAnnotation
// (set by the node-config syncer), and the hostname. Nodes without
// the provided-IP annotation are not kedge's to address and are left alone.
//
//	c := cloudcontroller.New(cloudcontroller.Config{Kubeconfig: admin, Log: log})
package cloudcontroller

import (
	"context"
	"net"
	"strings"

	corev1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"
	cloudproviderapi "k8s.io/cloud-provider/api"

	"github.com/kedge-io/kedge/pkg/nodemeta"
)

// ProviderName is the provider's name and the scheme of its provider IDs.
const ProviderName = "kedge"

// provider is the cloud provider: InstancesV2 only.
type provider struct{}

var (
	_ cloudprovider.Interface   = provider{}
	_ cloudprovider.InstancesV2 = provider{}
)

func (provider) Initialize(cloudprovider.ControllerClientBuilder, <-chan struct{}) {}
func (provider) LoadBalancer() (cloudprovider.LoadBalancer, bool)                  { return nil, false }
func (provider) Instances() (cloudprovider.Instances, bool)                        { return nil, false }
func (p provider) InstancesV2() (cloudprovider.InstancesV2, bool)                  { return p, true }
func (provider) Zones() (cloudprovider.Zones, bool)                                { return nil, false }
func (provider) Clusters() (cloudprovider.Clusters, bool)                          { return nil, false }
func (provider) Routes() (cloudprovider.Routes, bool)                              { return nil, false }
func (provider) ProviderName() string                                              { return ProviderName }
func (provider) HasClusterID() bool                                                { return false }

// InstanceExists: a node is its own instance; it exists while its Node does.
func (provider) InstanceExists(context.Context, *corev1.Node) (bool, error) { return true, nil }

// InstanceShutdown: kedge cannot tell a powered-off machine from a cut-off one.
func (provider) InstanceShutdown(context.Context, *corev1.Node) (bool, error) { return false, nil }

// InstanceMetadata returns the node's addresses (see Addresses) and its
// provider ID.
func (provider) InstanceMetadata(_ context.Context, node *corev1.Node) (*cloudprovider.InstanceMetadata, error) {
	return &cloudprovider.InstanceMetadata{ProviderID: ProviderName + "://" + node.Name, NodeAddresses: Addresses(node)}, nil
}

// Addresses are what the node declared: the kubelet's provided node IPs as
// InternalIP, then nodemeta.ExternalIPAnnotation's addresses as ExternalIP. A Node
// without provided node IPs gets none: its kubelet addresses it itself, and
// the controller leaves a Node alone for which the provider returns none.
func Addresses(node *corev1.Node) []corev1.NodeAddress {
	provided := node.Annotations[cloudproviderapi.AnnotationAlphaProvidedIPAddr]
	if provided == "" {
		return nil
	}
	var out []corev1.NodeAddress
	add := func(list string, kind corev1.NodeAddressType) {
		for _, s := range strings.Split(list, ",") {
			if ip := net.ParseIP(strings.TrimSpace(s)); ip != nil {
				out = append(out, corev1.NodeAddress{Type: kind, Address: ip.String()})
			}
		}
	}
	add(provided, corev1.NodeInternalIP)
	add(node.Annotations[nodemeta.ExternalIPAnnotation], corev1.NodeExternalIP)
	return out
}
