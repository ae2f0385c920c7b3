package netpol

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// counter counts the events a handler gets.
type counter struct{ adds, updates, deletes int }

func (c *counter) OnAdd(any, bool)   { c.adds++ }
func (c *counter) OnUpdate(any, any) { c.updates++ }
func (c *counter) OnDelete(obj any)  { c.deletes++ }
func (c *counter) total() [3]int     { return [3]int{c.adds, c.updates, c.deletes} }

func TestWhilePolicies(t *testing.T) {
	policies := cache.NewStore(cache.MetaNamespaceKeyFunc)
	c := &counter{}
	h := whilePolicies{handler: c, policies: policies}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p"}}
	events := func() {
		h.OnAdd(pod, false)
		h.OnUpdate(pod, pod)
		h.OnDelete(pod)
	}

	events()
	if got := c.total(); got != [3]int{} {
		t.Errorf("without a NetworkPolicy the handler got %v events, want none", got)
	}

	policy := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "deny"}}
	if err := policies.Add(policy); err != nil {
		t.Fatal(err)
	}
	events()
	if got := c.total(); got != [3]int{1, 1, 1} {
		t.Errorf("with a NetworkPolicy the handler got %v (adds, updates, deletes), want one of each", got)
	}

	if err := policies.Delete(policy); err != nil {
		t.Fatal(err)
	}
	events()
	if got := c.total(); got != [3]int{1, 1, 1} {
		t.Errorf("after the last NetworkPolicy went the handler got %v, want no more", got)
	}
}
