package netpol

import "k8s.io/client-go/tools/cache"

// whilePolicies hands kube-router's Pod event handler the events of Pods
// only while the cluster has a NetworkPolicy. kube-router answers every
// event of every Pod in the cluster (a Pod gets an address, changes its
// labels, goes away) with a full sync: iptables-save, the rules of every
// Pod of this node rebuilt, iptables-restore and the ipsets. Without a
// NetworkPolicy no Pod is isolated, so such a sync changes nothing that
// filters traffic: the rules it would add for a new Pod only mark that
// Pod's traffic as allowed, which it is without them. The first policy's
// event starts a full sync built from the listers (every Pod as it is
// then), the last one's removes what the policies put in place, and the
// periodic sync (SyncPeriod) still tidies the chains of Pods that came and
// went meanwhile.
type whilePolicies struct {
	handler  cache.ResourceEventHandler
	policies cache.Store
}

var _ cache.ResourceEventHandler = whilePolicies{}

// any reports whether the cluster has a NetworkPolicy, as the policies'
// informer has it. That informer and the Pods' run apart: a Pod event
// passed over while the first policy is on its way is covered by that
// policy's own full sync (built from the listers), and one passed on
// while the last is going is a sync more.
func (w whilePolicies) any() bool { return len(w.policies.ListKeys()) > 0 }

// OnAdd implements cache.ResourceEventHandler.
func (w whilePolicies) OnAdd(obj any, isInInitialList bool) {
	if w.any() {
		w.handler.OnAdd(obj, isInInitialList)
	}
}

// OnUpdate implements cache.ResourceEventHandler.
func (w whilePolicies) OnUpdate(oldObj, newObj any) {
	if w.any() {
		w.handler.OnUpdate(oldObj, newObj)
	}
}

// OnDelete implements cache.ResourceEventHandler.
func (w whilePolicies) OnDelete(obj any) {
	if w.any() {
		w.handler.OnDelete(obj)
	}
}
