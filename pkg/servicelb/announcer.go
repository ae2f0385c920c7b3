package servicelb

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/logging"
)

// AnnouncerConfig describes the announcer of one node.
type AnnouncerConfig struct {
	NodeName   string
	NodeIP     net.IP // its interface answers ARP and NDP
	Kubeconfig string // kube-proxy's: it lists Services, EndpointSlices and Nodes
	Log        *slog.Logger
}

// Announcer answers ARP (IPv4) and NDP (IPv6) for the pool addresses this
// node is elected for.
type Announcer struct {
	cfg AnnouncerConfig
	component.Background
}

var _ component.Component = (*Announcer)(nil)

// NewAnnouncer returns the announcer; nothing runs until Start.
func NewAnnouncer(cfg AnnouncerConfig) *Announcer { return &Announcer{cfg: cfg} }

// Name implements component.Component.
func (*Announcer) Name() string { return "servicelb-announcer" }

// Ready returns at once.
func (*Announcer) Ready(context.Context) error { return nil }

// Start opens the ARP socket on the node IP's interface (an error names
// it) and the NDP socket (without IPv6 there, a warning: IPv6 addresses are
// not announced from this node) and runs the election loop in the
// background.
func (a *Announcer) Start(ctx context.Context) error {
	ifi, err := interfaceOf(a.cfg.NodeIP)
	if err != nil {
		return err
	}
	rest, err := clientcmd.BuildConfigFromFlags("", a.cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", a.cfg.Kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return err
	}
	ctx, log := logging.WithComponent(a.Context(ctx), a.cfg.Log, "servicelb")
	resp, err := newResponder(ifi, log)
	if err != nil {
		return err
	}
	// IPv6 pool addresses need NDP; a node without IPv6 on that
	// interface still announces IPv4 ones.
	nd, err := newNDPResponder(ifi, log)
	if err != nil {
		log.Warn("IPv6 LoadBalancer addresses are not announced from this node", "err", err)
		nd = nil
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	e := &election{
		self: a.cfg.NodeName, log: log, resp: resp, ndp: nd,
		services: factory.Core().V1().Services().Lister(),
		nodes:    factory.Core().V1().Nodes().Lister(),
		slices:   factory.Discovery().V1().EndpointSlices().Lister(),
		probes:   map[string]*probe{},
		changed:  make(chan struct{}, 1),
	}
	poke := cache.ResourceEventHandlerFuncs{AddFunc: func(any) { e.poke() }, UpdateFunc: func(any, any) { e.poke() }, DeleteFunc: func(any) { e.poke() }}
	for _, inf := range []cache.SharedIndexInformer{factory.Core().V1().Services().Informer(), factory.Core().V1().Nodes().Informer(), factory.Discovery().V1().EndpointSlices().Informer()} {
		_, _ = inf.AddEventHandler(poke)
	}
	a.Go(func(context.Context) error {
		go resp.serve()
		defer resp.close()
		if nd != nil {
			go nd.serve()
			defer nd.close()
		}
		factory.Start(ctx.Done())
		defer factory.Shutdown()
		factory.WaitForCacheSync(ctx.Done())
		e.loop(ctx)
		return nil
	})
	return nil
}

// election decides, from the API and the probes, which addresses this
// node announces.
type election struct {
	self     string
	log      *slog.Logger
	resp     *responder    // ARP, IPv4 addresses
	ndp      *ndpResponder // NDP, IPv6 addresses; nil without IPv6
	services corelisters.ServiceLister
	nodes    corelisters.NodeLister
	slices   discoverylisters.EndpointSliceLister
	changed  chan struct{}

	mu     sync.Mutex
	probes map[string]*probe // node name → liveness
}

func (e *election) poke() {
	select {
	case e.changed <- struct{}{}:
	default:
	}
}

// loop re-elects on every change and every probe interval.
func (e *election) loop(ctx context.Context) {
	tick := time.NewTicker(ProbeEvery)
	defer tick.Stop()
	warnedNoNDP := false
	for {
		v4, v6 := splitFamilies(e.elect())
		for _, a := range e.resp.set(v4) {
			e.log.Info("announcing", "ip", a, "node", e.self)
			go e.resp.announce(a)
		}
		if e.ndp != nil {
			for _, a := range e.ndp.set(v6) {
				e.log.Info("announcing", "ip", a, "node", e.self)
				go e.ndp.announce(a)
			}
		} else if len(v6) > 0 && !warnedNoNDP {
			warnedNoNDP = true
			e.log.Warn("elected for IPv6 LoadBalancer addresses, but this node has no IPv6 on its node IP's interface", "ips", fmt.Sprint(sortedAddrs(v6)))
		}
		select {
		case <-ctx.Done():
			e.stopProbes()
			return
		case <-e.changed:
		case <-tick.C:
		}
	}
}

// elect returns the pool addresses this node must answer for.
func (e *election) elect() map[netip.Addr]bool {
	svcs, _ := e.services.List(labels.Everything())
	nodes, _ := e.nodes.List(labels.Everything())
	eligible := map[string]*corev1.Node{}
	for _, n := range nodes {
		if n.Labels[AnnounceLabel] != "false" && nodeReady(n) {
			eligible[n.Name] = n
		}
	}
	wanted := map[string]bool{}
	mine := map[netip.Addr]bool{}
	for _, svc := range svcs {
		if !ours(svc) || svc.Annotations[AssignedAnnotation] == "" {
			continue
		}
		cands := e.candidates(svc, eligible)
		for _, in := range svc.Status.LoadBalancer.Ingress {
			ip, err := netip.ParseAddr(in.IP)
			if err != nil {
				continue
			}
			ip = ip.Unmap()
			order := rank(ip, cands)
			for _, n := range order {
				if n == e.self {
					mine[ip] = true
					break
				}
				wanted[n] = true
				if e.alive(n, eligible[n]) {
					break
				}
			}
		}
	}
	e.keepProbes(wanted, eligible)
	return mine
}

// candidates are the eligible nodes that may announce svc: for
// externalTrafficPolicy Local only those with a ready endpoint of it.
func (e *election) candidates(svc *corev1.Service, eligible map[string]*corev1.Node) []string {
	var out []string
	if svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		for n := range eligible {
			out = append(out, n)
		}
		return out
	}
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.Name})
	slices, _ := e.slices.EndpointSlices(svc.Namespace).List(sel)
	seen := map[string]bool{}
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			if _, ok := eligible[*ep.NodeName]; ok && !seen[*ep.NodeName] {
				seen[*ep.NodeName] = true
				out = append(out, *ep.NodeName)
			}
		}
	}
	return out
}

// rank orders nodes for ip: by a hash of both, so that addresses spread
// over the nodes and every node computes the same order.
func rank(ip netip.Addr, nodes []string) []string {
	key := func(n string) uint64 {
		h := fnv.New64a()
		_, _ = h.Write([]byte(ip.String() + "/" + n))
		return h.Sum64()
	}
	out := append([]string(nil), nodes...)
	sort.Slice(out, func(i, j int) bool { return key(out[i]) < key(out[j]) })
	return out
}

// splitFamilies splits addrs into its IPv4 and its IPv6 addresses.
func splitFamilies(addrs map[netip.Addr]bool) (v4, v6 map[netip.Addr]bool) {
	v4, v6 = map[netip.Addr]bool{}, map[netip.Addr]bool{}
	for a := range addrs {
		if a.Is4() {
			v4[a] = true
		} else {
			v6[a] = true
		}
	}
	return v4, v6
}

// sortedAddrs lists addrs in order.
func sortedAddrs(addrs map[netip.Addr]bool) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	for a := range addrs {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
