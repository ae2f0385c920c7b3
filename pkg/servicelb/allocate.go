package servicelb

import (
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// Class is the loadBalancerClass kedge serves; Services without a class
// are kedge's too, unless --disable servicelb.
const Class = "kedge.io/servicelb"

// ours reports whether svc is a LoadBalancer Service kedge serves.
func ours(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer &&
		(svc.Spec.LoadBalancerClass == nil || *svc.Spec.LoadBalancerClass == Class)
}

// poolFor returns the pool svc asks for: its PoolAnnotation, else the
// DefaultPool, else the first pool.
func poolFor(svc *corev1.Service, pools []Pool) (Pool, error) {
	want := svc.Annotations[PoolAnnotation]
	if want == "" {
		if i := slices.IndexFunc(pools, func(p Pool) bool { return p.Name == DefaultPool }); i >= 0 {
			return pools[i], nil
		}
		return pools[0], nil
	}
	if i := slices.IndexFunc(pools, func(p Pool) bool { return p.Name == want }); i >= 0 {
		return pools[i], nil
	}
	names := make([]string, 0, len(pools))
	for _, p := range pools {
		names = append(names, p.Name)
	}
	return Pool{}, fmt.Errorf("annotation %s=%s: no such pool (pools: %v)", PoolAnnotation, want, names)
}

// current is the address svc holds from pool, if it still may keep it.
func current(svc *corev1.Service, pool Pool) (netip.Addr, bool) {
	if svc.Annotations[AssignedAnnotation] != pool.Name {
		return netip.Addr{}, false
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil && pool.Contains(a) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// allocate picks svc's address: the one it holds, else the
// spec.loadBalancerIP it asks for if that is in its pool and free, else
// the lowest free address of its pool. used maps the addresses other
// Services hold to their keys; inUse probes the segment for an address a
// machine already answers for (nil: no probe). The error explains an
// exhausted pool, a requested address that is taken or outside the pool,
// or an unknown pool.
func allocate(svc *corev1.Service, pools []Pool, used map[netip.Addr]string, inUse func(netip.Addr) bool) (Pool, netip.Addr, error) {
	pool, err := poolFor(svc, pools)
	if err != nil {
		return Pool{}, netip.Addr{}, err
	}
	if a, ok := current(svc, pool); ok {
		return pool, a, nil
	}
	if req := svc.Spec.LoadBalancerIP; req != "" {
		a, err := netip.ParseAddr(req)
		switch {
		case err != nil:
			return pool, netip.Addr{}, fmt.Errorf("spec.loadBalancerIP %q: not an IP address", req)
		case !pool.Contains(a):
			return pool, netip.Addr{}, fmt.Errorf("spec.loadBalancerIP %s: not in pool %s", a, pool)
		case used[a] != "":
			return pool, netip.Addr{}, fmt.Errorf("spec.loadBalancerIP %s: already the address of Service %s", a, used[a])
		case inUse != nil && inUse(a):
			return pool, netip.Addr{}, fmt.Errorf("spec.loadBalancerIP %s: another machine on the segment answers ARP for it", a)
		}
		return pool, a, nil
	}
	var probed []string
	for a, n := pool.First, uint64(0); n < pool.Size() && pool.Contains(a); a, n = a.Next(), n+1 {
		if used[a] != "" {
			continue
		}
		if inUse != nil && inUse(a) {
			probed = append(probed, a.String())
			continue
		}
		return pool, a, nil
	}
	if len(probed) > 0 {
		return pool, netip.Addr{}, fmt.Errorf("pool %s is exhausted: every address is a Service's or answers ARP on the segment (%v)", pool, probed)
	}
	return pool, netip.Addr{}, fmt.Errorf("pool %s is exhausted: all %d addresses are taken", pool, pool.Size())
}
