package metricsserver

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// ServiceName is the Service of the APIService v1beta1.metrics.k8s.io, in
// kube-system (manifests/metrics-server.yaml).
const ServiceName = "metrics-server"

// PortName is the name of the Service's and the EndpointSlice's port.
const PortName = "https"

// ManagedBy marks the EndpointSlice kedge maintains for the metrics-server
// Service.
const ManagedBy = "metrics-server.kedge.io"

// resync is how often the mirror checks the EndpointSlice without an event
// (a Service created after the kubernetes slice last changed).
const resync = 30 * time.Second

// mirrorEndpoints keeps the metrics-server Service's EndpointSlice listing
// the addresses of the kubernetes Service's (the servers whose apiserver
// is up: the apiserver's endpoint reconciler drops a server whose lease
// expired), at Port, until ctx ends. Every server runs it; they write the
// same content.
func mirrorEndpoints(ctx context.Context, client kubernetes.Interface, log *slog.Logger) {
	factory := informers.NewSharedInformerFactoryWithOptions(client, resync,
		informers.WithNamespace(metav1.NamespaceDefault),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = discoveryv1.LabelServiceName + "=kubernetes"
		}))
	informer := factory.Discovery().V1().EndpointSlices()
	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	_, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	})
	if err != nil {
		log.Error("EndpointSlice mirror not started", "err", err)
		return
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-retry.C:
		}
		src, err := informer.Lister().EndpointSlices(metav1.NamespaceDefault).List(labels.Everything())
		if err == nil {
			err = reconcileEndpoints(ctx, client, src)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("metrics-server EndpointSlice not updated; retrying", "err", err)
			retry.Reset(2 * time.Second)
			continue
		}
		retry.Reset(resync)
	}
}

// reconcileEndpoints creates or updates the metrics-server EndpointSlice
// from the kubernetes Service's slices src; it is owned by the Service, so
// that --disable metrics-server (which deletes the Service) removes it.
// Without the Service (not applied yet, or disabled) it does nothing.
func reconcileEndpoints(ctx context.Context, client kubernetes.Interface, src []*discoveryv1.EndpointSlice) error {
	svc, err := client.CoreV1().Services(metav1.NamespaceSystem).Get(ctx, ServiceName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	want := endpointSlice(svc, src)
	if want == nil {
		return nil // no server listed yet
	}
	api := client.DiscoveryV1().EndpointSlices(metav1.NamespaceSystem)
	have, err := api.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
	case err == nil && sameSlice(have, want):
		return nil
	case err == nil:
		want.ResourceVersion = have.ResourceVersion
		_, err = api.Update(ctx, want, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("EndpointSlice %s/%s: %w", want.Namespace, want.Name, err)
	}
	return nil
}

// endpointSlice is the metrics-server Service's slice: the addresses (and
// their readiness) of the kubernetes Service's slice of the cluster's
// primary family, at Port; nil when src has none.
func endpointSlice(svc *corev1.Service, src []*discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	src = slices.Clone(src)
	slices.SortFunc(src, func(a, b *discoveryv1.EndpointSlice) int {
		switch {
		case a.Name == "kubernetes": // the reconciler's own slice first
			return -1
		case b.Name == "kubernetes":
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	var from *discoveryv1.EndpointSlice
	for _, s := range src {
		if len(s.Endpoints) > 0 && s.AddressType != discoveryv1.AddressTypeFQDN {
			from = s
			break
		}
	}
	if from == nil {
		return nil
	}
	var eps []discoveryv1.Endpoint
	for _, e := range from.Endpoints {
		eps = append(eps, discoveryv1.Endpoint{
			Addresses:  slices.Clone(e.Addresses),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(e.Conditions.Ready == nil || *e.Conditions.Ready)},
		})
	}
	slices.SortFunc(eps, func(a, b discoveryv1.Endpoint) int { return strings.Compare(a.Addresses[0], b.Addresses[0]) })
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      ServiceName,
			Namespace: metav1.NamespaceSystem,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: ServiceName,
				discoveryv1.LabelManagedBy:   ManagedBy,
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
			}},
		},
		AddressType: from.AddressType,
		Endpoints:   eps,
		Ports: []discoveryv1.EndpointPort{{
			Name: ptr.To(PortName), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(int32(Port)),
		}},
	}
}

// sameSlice says whether have already holds want's content.
func sameSlice(have, want *discoveryv1.EndpointSlice) bool {
	return have.AddressType == want.AddressType &&
		equality.Semantic.DeepEqual(have.Endpoints, want.Endpoints) &&
		equality.Semantic.DeepEqual(have.Ports, want.Ports) &&
		equality.Semantic.DeepEqual(have.OwnerReferences, want.OwnerReferences) &&
		have.Labels[discoveryv1.LabelServiceName] == ServiceName &&
		have.Labels[discoveryv1.LabelManagedBy] == ManagedBy
}
