package metricsserver

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

// apiserverSlice is the kubernetes Service's slice as the apiserver's
// endpoint reconciler writes it.
func apiserverSlice(addrs ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "kubernetes", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(6443))}},
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return s
}

var service = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: ServiceName, Namespace: "kube-system", UID: "svc-uid"}}

func TestEndpointSlice(t *testing.T) {
	s := endpointSlice(service, []*discoveryv1.EndpointSlice{apiserverSlice("192.0.2.12", "192.0.2.11")})
	if s.Name != ServiceName || s.Namespace != "kube-system" || s.Labels[discoveryv1.LabelServiceName] != ServiceName || s.Labels[discoveryv1.LabelManagedBy] != ManagedBy {
		t.Fatalf("meta = %+v", s.ObjectMeta)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Service" || s.OwnerReferences[0].UID != "svc-uid" {
		t.Fatalf("owner = %+v", s.OwnerReferences)
	}
	if len(s.Endpoints) != 2 || s.Endpoints[0].Addresses[0] != "192.0.2.11" || s.Endpoints[1].Addresses[0] != "192.0.2.12" || !*s.Endpoints[0].Conditions.Ready {
		t.Fatalf("endpoints = %+v", s.Endpoints)
	}
	if len(s.Ports) != 1 || *s.Ports[0].Name != PortName || *s.Ports[0].Port != Port || *s.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Fatalf("ports = %+v", s.Ports)
	}
	if got := endpointSlice(service, []*discoveryv1.EndpointSlice{apiserverSlice()}); got != nil {
		t.Fatalf("no servers: %+v, want nil", got)
	}
}

func TestReconcileEndpoints(t *testing.T) {
	client := fake.NewClientset()
	src := []*discoveryv1.EndpointSlice{apiserverSlice("192.0.2.11")}
	// No Service (not applied yet, or --disable metrics-server): nothing.
	if err := reconcileEndpoints(t.Context(), client, src); err != nil {
		t.Fatal(err)
	}
	if l, _ := client.DiscoveryV1().EndpointSlices("kube-system").List(t.Context(), metav1.ListOptions{}); len(l.Items) != 0 {
		t.Fatalf("slices without the Service: %v", l.Items)
	}
	if _, err := client.CoreV1().Services("kube-system").Create(t.Context(), service, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	writes := func() int {
		n := 0
		for _, a := range client.Actions() {
			if a.GetResource().Resource == "endpointslices" && (a.GetVerb() == "create" || a.GetVerb() == "update") {
				n++
			}
		}
		return n
	}
	get := func() *discoveryv1.EndpointSlice {
		s, err := client.DiscoveryV1().EndpointSlices("kube-system").Get(t.Context(), ServiceName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for range 2 { // created, then left alone
		if err := reconcileEndpoints(t.Context(), client, src); err != nil {
			t.Fatal(err)
		}
	}
	if n := writes(); n != 1 {
		t.Fatalf("%d writes for one content, want 1: %v", n, client.Actions())
	}
	if s := get(); len(s.Endpoints) != 1 || s.Endpoints[0].Addresses[0] != "192.0.2.11" {
		t.Fatalf("slice = %+v", s.Endpoints)
	}
	// A second server's apiserver joins the kubernetes Service.
	src = []*discoveryv1.EndpointSlice{apiserverSlice("192.0.2.11", "192.0.2.12")}
	if err := reconcileEndpoints(t.Context(), client, src); err != nil {
		t.Fatal(err)
	}
	if s := get(); len(s.Endpoints) != 2 || writes() != 2 {
		t.Fatalf("after a server joined: %+v, %d writes", s.Endpoints, writes())
	}
}
