package coredns

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// ServiceName is the Service pods use for DNS, as in every Kubernetes distribution.
const ServiceName = "kube-dns"

// ManagedBy marks the EndpointSlices kedge maintains for the kube-dns Service.
const ManagedBy = "coredns.kedge.io"

// endpointSlice is this node's slice of the kube-dns Service: one endpoint,
// the node IP, owned by the Node so that it goes when the Node is deleted.
func endpointSlice(node *corev1.Node, cfg Config) *discoveryv1.EndpointSlice {
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	port := int32(Port)
	family := discoveryv1.AddressTypeIPv4
	if cfg.NodeIP.To4() == nil {
		family = discoveryv1.AddressTypeIPv6
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      ServiceName + "-" + node.Name,
			Namespace: metav1.NamespaceSystem,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: ServiceName,
				discoveryv1.LabelManagedBy:   ManagedBy,
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID,
			}},
		},
		AddressType: family,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{cfg.NodeIP.String()},
			NodeName:   ptr.To(node.Name),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		}},
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("dns"), Protocol: &udp, Port: &port},
			{Name: ptr.To("dns-tcp"), Protocol: &tcp, Port: &port},
		},
	}
}

// PublishEndpoint creates or updates this node's EndpointSlice of the
// kube-dns Service.
func PublishEndpoint(ctx context.Context, client kubernetes.Interface, cfg Config) error {
	node, err := client.CoreV1().Nodes().Get(ctx, cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get node %s: %w", cfg.NodeName, err)
	}
	want := endpointSlice(node, cfg)
	slices := client.DiscoveryV1().EndpointSlices(metav1.NamespaceSystem)
	have, err := slices.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = slices.Create(ctx, want, metav1.CreateOptions{})
	case err == nil:
		want.ResourceVersion = have.ResourceVersion
		_, err = slices.Update(ctx, want, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("publish EndpointSlice %s/%s: %w", want.Namespace, want.Name, err)
	}
	return nil
}
