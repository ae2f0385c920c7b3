// Package servicelb gives LoadBalancer Services an address on bare metal,
// in the kedge process, with no image: a controller on the servers
// allocates each Service an address from an address pool (--service-lb-pool)
// and sets status.loadBalancer.ingress, and every node runs an announcer
// that answers ARP (IPv4) and NDP (IPv6) for the addresses it is elected
// for, so that the segment's machines send that traffic to it; kube-proxy's
// rules for the ingress address carry it to the Service's endpoints. This is MetalLB's
// layer-2 mode, built in. Without a pool a Service gets the nodes'
// addresses, as k3s's ServiceLB gives it.
//
// One node announces an address at a time: the first, in an order hashed
// from the address and the node names, of the Ready nodes that are not
// labelled kedge.io/lb-announce=false and, for externalTrafficPolicy: Local,
// have a ready endpoint of the Service (so the client's address reaches the
// pod). Every node computes the same order from the API; a node takes over
// when every node before it fails its liveness probe (a TCP connect to the
// kubelet port, every second), without waiting for the Node to turn
// NotReady, and says so with gratuitous ARP or unsolicited Neighbor
// Advertisements.
//
//	pools, _ := servicelb.ParsePools([]string{"default=192.0.2.240-192.0.2.250"})
package servicelb

import (
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// PoolAnnotation on a Service names the pool its address comes from; the
// controller sets AssignedAnnotation to the pool it allocated from.
const (
	PoolAnnotation     = "kedge.io/lb-pool"
	AssignedAnnotation = "kedge.io/lb-pool-assigned"
)

// AnnounceLabel set to "false" on a Node keeps it from announcing.
const AnnounceLabel = "kedge.io/lb-announce"

// DefaultPool is the pool a Service without PoolAnnotation gets, if there
// is one of that name; otherwise the first pool.
const DefaultPool = "default"

// Pool is a named range of addresses, both ends included. A pool name
// may have one range of each IP family (two Pools of that name): a
// dual-stack Service gets an address from each.
type Pool struct {
	Name        string
	First, Last netip.Addr
}

// Contains reports whether a is in the pool.
func (p Pool) Contains(a netip.Addr) bool {
	return a.BitLen() == p.First.BitLen() && p.First.Compare(a) <= 0 && a.Compare(p.Last) <= 0
}

// Size is the number of addresses in the pool (capped at 1<<32 for IPv6).
func (p Pool) Size() uint64 {
	n := new(big.Int).Sub(new(big.Int).SetBytes(p.Last.AsSlice()), new(big.Int).SetBytes(p.First.AsSlice()))
	n.Add(n, big.NewInt(1))
	if !n.IsUint64() || n.Uint64() > 1<<32 {
		return 1 << 32
	}
	return n.Uint64()
}

// String is the pool as the flag gives it.
func (p Pool) String() string { return p.Name + "=" + p.First.String() + "-" + p.Last.String() }

// ParsePools reads --service-lb-pool NAME=RANGE values: RANGE is
// FIRST-LAST or a CIDR (whose network and broadcast addresses are left out
// for IPv4 prefixes shorter than /31, and whose subnet-router anycast
// address, the first, for IPv6 prefixes shorter than /127). Names are DNS
// labels; a name may be given once per IP family; ranges must not overlap.
func ParsePools(values []string) ([]Pool, error) {
	var pools []Pool
	for _, v := range values {
		name, rng, ok := strings.Cut(v, "=")
		if !ok {
			return nil, fmt.Errorf("--service-lb-pool %q: want NAME=FIRST-LAST or NAME=CIDR, e.g. default=192.0.2.240-192.0.2.250", v)
		}
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			return nil, fmt.Errorf("--service-lb-pool %q: name: %s", v, strings.Join(errs, "; "))
		}
		p := Pool{Name: name}
		if first, last, isRange := strings.Cut(rng, "-"); isRange {
			var err1, err2 error
			p.First, err1 = netip.ParseAddr(strings.TrimSpace(first))
			p.Last, err2 = netip.ParseAddr(strings.TrimSpace(last))
			if err1 != nil || err2 != nil || p.First.BitLen() != p.Last.BitLen() || p.Last.Less(p.First) {
				return nil, fmt.Errorf("--service-lb-pool %q: want FIRST-LAST with FIRST ≤ LAST of one IP family", v)
			}
		} else {
			prefix, err := netip.ParsePrefix(rng)
			if err != nil {
				return nil, fmt.Errorf("--service-lb-pool %q: not a range FIRST-LAST nor a CIDR", v)
			}
			prefix = prefix.Masked()
			p.First, p.Last = prefix.Addr(), lastAddr(prefix)
			if prefix.Addr().Is4() && prefix.Bits() < 31 {
				p.First, p.Last = p.First.Next(), p.Last.Prev()
			} else if prefix.Addr().Is6() && prefix.Bits() < 127 {
				p.First = p.First.Next()
			}
		}
		p.First, p.Last = p.First.Unmap(), p.Last.Unmap()
		for _, o := range pools {
			if o.Name == p.Name && o.First.BitLen() == p.First.BitLen() {
				return nil, fmt.Errorf("--service-lb-pool %q: pool %s given twice for one IP family (a pool has at most one IPv4 and one IPv6 range)", v, name)
			}
			if o.Contains(p.First) || o.Contains(p.Last) || p.Contains(o.First) {
				return nil, fmt.Errorf("--service-lb-pool %q overlaps pool %s", v, o)
			}
		}
		pools = append(pools, p)
	}
	return pools, nil
}

// CheckOverlap refuses a pool that overlaps a network of the cluster
// (--cluster-cidr, --service-cidr): its addresses would be routed as pods'
// or Services'.
func CheckOverlap(pools []Pool, flag string, n *net.IPNet) error {
	prefix, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return nil
	}
	ones, _ := n.Mask.Size()
	cidr := netip.PrefixFrom(prefix.Unmap(), ones).Masked()
	for _, p := range pools {
		if cidr.Contains(p.First) || cidr.Contains(p.Last) || p.Contains(cidr.Addr()) {
			return fmt.Errorf("--service-lb-pool %s overlaps %s %s", p, flag, n)
		}
	}
	return nil
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - uint(i%8))
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
