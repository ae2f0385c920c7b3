package cloudcontroller

import (
	"context"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	cloudproviderapi "k8s.io/cloud-provider/api"

	"github.com/kedge-io/kedge/pkg/nodemeta"
)

func TestAddresses(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: map[string]string{}}}
	if got := Addresses(node); got != nil {
		t.Errorf("no provided IP: %v, want none (the kubelet addresses the node)", got)
	}
	node.Annotations[cloudproviderapi.AnnotationAlphaProvidedIPAddr] = "192.0.2.7"
	node.Annotations[nodemeta.ExternalIPAnnotation] = "203.0.113.5,2001:db8::5,bogus"
	want := []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "192.0.2.7"},
		{Type: corev1.NodeExternalIP, Address: "203.0.113.5"},
		{Type: corev1.NodeExternalIP, Address: "2001:db8::5"},
	}
	if got := Addresses(node); !reflect.DeepEqual(got, want) {
		t.Errorf("Addresses = %v, want %v", got, want)
	}
}

// TestControllerInitializesNode runs upstream's cloud node controller with
// kedge's provider: a Node registered by a kubelet with
// --cloud-provider=external is initialized (taint removed, provider ID set)
// with its external address, which follows a changed annotation; a Node
// whose kubelet addresses itself is left alone.
func TestControllerInitializesNode(t *testing.T) {
	uninitialized := corev1.Taint{Key: cloudproviderapi.TaintExternalCloudProvider, Value: "true", Effect: corev1.TaintEffectNoSchedule}
	ext := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "edge", Annotations: map[string]string{
			cloudproviderapi.AnnotationAlphaProvidedIPAddr: "192.0.2.7",
			nodemeta.ExternalIPAnnotation:                  "203.0.113.5",
		}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{uninitialized}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "192.0.2.7"}, {Type: corev1.NodeHostName, Address: "edge"},
		}},
	}
	plain := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "plain"},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.8"}}},
	}
	client := fake.NewClientset(ext, plain)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, client) }()
	waitFor := func(what string, ok func(*corev1.Node) bool, name string) {
		t.Helper()
		for {
			n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err == nil && ok(n) {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: node %s: %+v %+v (%v)", what, name, n.Spec, n.Status.Addresses, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	hasExternal := func(ip string) func(*corev1.Node) bool {
		return func(n *corev1.Node) bool {
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeExternalIP && a.Address == ip {
					return true
				}
			}
			return false
		}
	}
	waitFor("initialized", func(n *corev1.Node) bool {
		return len(n.Spec.Taints) == 0 && n.Spec.ProviderID == "kedge://edge" && hasExternal("203.0.113.5")(n)
	}, "edge")
	n, _ := client.CoreV1().Nodes().Get(ctx, "edge", metav1.GetOptions{})
	n.Annotations[nodemeta.ExternalIPAnnotation] = "203.0.113.9"
	if _, err := client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("new external IP within "+StatusEvery.String(), hasExternal("203.0.113.9"), "edge")
	p, _ := client.CoreV1().Nodes().Get(ctx, "plain", metav1.GetOptions{})
	if p.Spec.ProviderID != "" || len(p.Status.Addresses) != 1 {
		t.Errorf("a node kedge does not address was changed: %+v %+v", p.Spec, p.Status.Addresses)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}
