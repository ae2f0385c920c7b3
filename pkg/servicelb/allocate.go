package servicelb

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

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

// poolFor returns the name of the pool svc asks for (its PoolAnnotation,
// else DefaultPool, else the first pool's) and that pool's ranges: at most
// one per IP family.
func poolFor(svc *corev1.Service, pools []Pool) (string, []Pool, error) {
	want := svc.Annotations[PoolAnnotation]
	if want == "" {
		want = pools[0].Name
		if slices.ContainsFunc(pools, func(p Pool) bool { return p.Name == DefaultPool }) {
			want = DefaultPool
		}
	}
	var ranges []Pool
	for _, p := range pools {
		if p.Name == want {
			ranges = append(ranges, p)
		}
	}
	if len(ranges) > 0 {
		return want, ranges, nil
	}
	var names []string
	for _, p := range pools {
		if !slices.Contains(names, p.Name) {
			names = append(names, p.Name)
		}
	}
	return "", nil, fmt.Errorf("annotation %s=%s: no such pool (pools: %v)", PoolAnnotation, want, names)
}

// current are the addresses svc holds from pool name's ranges, if it
// still may keep them.
func current(svc *corev1.Service, name string, ranges []Pool) []netip.Addr {
	if svc.Annotations[AssignedAnnotation] != name {
		return nil
	}
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		a, err := netip.ParseAddr(in.IP)
		if err == nil && slices.ContainsFunc(ranges, func(p Pool) bool { return p.Contains(a) }) {
			out = append(out, a)
		}
	}
	return out
}

// families are the IP families svc wants addresses of: its
// spec.ipFamilies (which the apiserver always sets), else the family of
// its pool's first range.
func families(svc *corev1.Service, ranges []Pool) []corev1.IPFamily {
	if len(svc.Spec.IPFamilies) > 0 {
		return svc.Spec.IPFamilies
	}
	return []corev1.IPFamily{family(ranges[0].First)}
}

func family(a netip.Addr) corev1.IPFamily {
	if a.Is4() {
		return corev1.IPv4Protocol
	}
	return corev1.IPv6Protocol
}

// allocate picks svc's addresses from its pool: one for each of its IP
// families that the pool has a range of, in the order of spec.ipFamilies
// (a dual-stack Service from a pool with both gets both). For each family:
// the address it holds, else the spec.loadBalancerIP it asks for if that
// is of the family, in the range and free, else the lowest free address of
// the range. used maps the addresses other Services hold to their keys;
// inUse probes the segment for an address a machine already answers for
// (nil: no probe). The error explains an exhausted range, a requested
// address that is taken or outside the pool, an unknown pool, or a pool
// with no range of the Service's families; then nothing is allocated.
func allocate(svc *corev1.Service, pools []Pool, used map[netip.Addr]string, inUse func(netip.Addr) bool) (string, []netip.Addr, error) {
	name, ranges, err := poolFor(svc, pools)
	if err != nil {
		return "", nil, err
	}
	held := current(svc, name, ranges)
	fams := families(svc, ranges)
	var req netip.Addr
	if s := svc.Spec.LoadBalancerIP; s != "" {
		if req, err = netip.ParseAddr(s); err != nil {
			return name, nil, fmt.Errorf("spec.loadBalancerIP %q: not an IP address", s)
		}
		req = req.Unmap()
		if !slices.Contains(fams, family(req)) {
			return name, nil, fmt.Errorf("spec.loadBalancerIP %s: not of the Service's spec.ipFamilies %v", req, fams)
		}
	}
	var out []netip.Addr
	for _, f := range fams {
		i := slices.IndexFunc(ranges, func(p Pool) bool { return family(p.First) == f })
		if i < 0 {
			if req.IsValid() && family(req) == f {
				return name, nil, fmt.Errorf("spec.loadBalancerIP %s: not in pool %s (it has no %s range)", req, name, f)
			}
			continue
		}
		a, err := allocateIn(ranges[i], held, req, used, inUse)
		if err != nil {
			return name, nil, err
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		var have []string
		for _, p := range ranges {
			have = append(have, p.String())
		}
		return name, nil, fmt.Errorf("pool %s has no range of the Service's spec.ipFamilies %v (it has %s): add one with --service-lb-pool %s=RANGE", name, fams, strings.Join(have, ", "), name)
	}
	return name, out, nil
}

// allocateIn picks the address of one range, as allocate describes; req
// applies if it is of the range's family.
func allocateIn(pool Pool, held []netip.Addr, req netip.Addr, used map[netip.Addr]string, inUse func(netip.Addr) bool) (netip.Addr, error) {
	if i := slices.IndexFunc(held, pool.Contains); i >= 0 {
		return held[i], nil
	}
	if req.IsValid() && family(req) == family(pool.First) {
		switch {
		case !pool.Contains(req):
			return netip.Addr{}, fmt.Errorf("spec.loadBalancerIP %s: not in pool %s", req, pool)
		case used[req] != "":
			return netip.Addr{}, fmt.Errorf("spec.loadBalancerIP %s: already the address of Service %s", req, used[req])
		case inUse != nil && inUse(req):
			return netip.Addr{}, fmt.Errorf("spec.loadBalancerIP %s: another machine on the segment answers %s for it", req, probeName(req))
		}
		return req, nil
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
		return a, nil
	}
	if len(probed) > 0 {
		return netip.Addr{}, fmt.Errorf("pool %s is exhausted: every address is a Service's or answers %s on the segment (%v)", pool, probeName(pool.First), probed)
	}
	return netip.Addr{}, fmt.Errorf("pool %s is exhausted: all %d addresses are taken", pool, pool.Size())
}

// probeName is the protocol the segment is probed with for a.
func probeName(a netip.Addr) string {
	if a.Is4() {
		return "ARP"
	}
	return "a Neighbor Solicitation"
}
