package servicelb

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/leader"
	"github.com/kedge-io/kedge/pkg/logging"
)

// LeaseName is the Lease in kube-system electing the server that allocates.
const LeaseName = "kedge-servicelb"

// ControllerConfig describes the allocating controller of one server.
type ControllerConfig struct {
	Kubeconfig string // admin: it updates Services and records Events
	Pools      []Pool
	// InUse probes the segment for an address another machine answers
	// ARP or NDP for, before it is handed out (nil: no probe).
	InUse func(netip.Addr) bool
	Log   *slog.Logger
}

// Controller allocates LoadBalancer addresses while its server leads.
type Controller struct {
	cfg ControllerConfig
	component.Background
}

var _ component.Component = (*Controller)(nil)

// NewController returns the controller; nothing runs until Start.
func NewController(cfg ControllerConfig) *Controller { return &Controller{cfg: cfg} }

// Name implements component.Component.
func (*Controller) Name() string { return "servicelb" }

// Ready returns at once (a server that does not lead is ready too).
func (*Controller) Ready(context.Context) error { return nil }

// Start campaigns for LeaseName in the background.
func (c *Controller) Start(ctx context.Context) error {
	rest, err := clientcmd.BuildConfigFromFlags("", c.cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", c.cfg.Kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return err
	}
	ctx, log := logging.WithComponent(c.Context(ctx), c.cfg.Log, "servicelb")
	c.Go(func(context.Context) error {
		return leader.Campaign(ctx, client, LeaseName, log, func(ctx context.Context) error {
			return newAllocator(client, c.cfg, log).run(ctx)
		})
	})
	return nil
}

// allocator is the controller's loop while it leads.
type allocator struct {
	client   kubernetes.Interface
	cfg      ControllerConfig
	log      *slog.Logger
	services corelisters.ServiceLister
	nodes    corelisters.NodeLister
	queue    workqueue.TypedRateLimitingInterface[string]
	events   record.EventRecorder
}

func newAllocator(client kubernetes.Interface, cfg ControllerConfig, log *slog.Logger) *allocator {
	return &allocator{client: client, cfg: cfg, log: log,
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())}
}

func (a *allocator) run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(a.client, 0)
	svcInformer := factory.Core().V1().Services()
	nodeInformer := factory.Core().V1().Nodes()
	a.services, a.nodes = svcInformer.Lister(), nodeInformer.Lister()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			a.queue.Add(key)
		}
	}
	_, _ = svcInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, n any) { enqueue(n) },
		// A deleted Service frees its address: Services waiting for one retry.
		DeleteFunc: func(any) { a.enqueueAll() },
	})
	if len(a.cfg.Pools) == 0 {
		// Without a pool the ingress addresses are the nodes'.
		_, _ = nodeInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { a.enqueueAll() }, DeleteFunc: func(any) { a.enqueueAll() },
			UpdateFunc: func(o, n any) {
				if !slices.Equal(nodeAddresses([]*corev1.Node{o.(*corev1.Node)}), nodeAddresses([]*corev1.Node{n.(*corev1.Node)})) {
					a.enqueueAll()
				}
			},
		})
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	a.events = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kedge-servicelb"})
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), svcInformer.Informer().HasSynced, nodeInformer.Informer().HasSynced) {
		return ctx.Err()
	}
	if len(a.cfg.Pools) > 0 {
		a.log.Info("allocating LoadBalancer addresses", "pools", fmt.Sprint(a.cfg.Pools))
	} else {
		a.log.Debug("LoadBalancer Services get the nodes' addresses (no --service-lb-pool)")
	}
	go func() {
		<-ctx.Done()
		a.queue.ShutDown()
	}()
	for a.next(ctx) {
	}
	return nil
}

func (a *allocator) enqueueAll() {
	svcs, _ := a.services.List(labels.Everything())
	for _, s := range svcs {
		if ours(s) {
			a.queue.Add(s.Namespace + "/" + s.Name)
		}
	}
}

// next syncs one Service; one worker, so allocations never race.
func (a *allocator) next(ctx context.Context) bool {
	key, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(key)
	if err := a.sync(ctx, key); err != nil {
		a.log.Debug("service not synced; retrying", "service", key, "err", err)
		a.queue.AddRateLimited(key)
		return true
	}
	a.queue.Forget(key)
	return true
}

// sync gives one Service its ingress addresses, or takes them back from a
// Service that is no longer a LoadBalancer of kedge's.
func (a *allocator) sync(ctx context.Context, key string) error {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	svc, err := a.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	if !ours(svc) {
		if _, had := svc.Annotations[AssignedAnnotation]; had {
			return a.set(ctx, svc, "", nil)
		}
		return nil
	}
	if len(a.cfg.Pools) == 0 {
		nodes, err := a.nodes.List(labels.Everything())
		if err != nil {
			return err
		}
		return a.set(ctx, svc, "", nodeAddresses(nodes))
	}
	used := map[netip.Addr]string{}
	all, _ := a.services.List(labels.Everything())
	for _, o := range all {
		if o.UID == svc.UID || !ours(o) {
			continue
		}
		if name, ranges, err := poolFor(o, a.cfg.Pools); err == nil {
			for _, ip := range current(o, name, ranges) {
				used[ip] = o.Namespace + "/" + o.Name
			}
		}
	}
	name, ips, err := allocate(svc, a.cfg.Pools, used, a.cfg.InUse)
	if err != nil {
		a.events.Event(svc, corev1.EventTypeWarning, "AllocationFailed", err.Error())
		return nil // retried when a Service goes or this one changes
	}
	var ingress []string
	for _, ip := range ips {
		ingress = append(ingress, ip.String())
	}
	_, ranges, _ := poolFor(svc, a.cfg.Pools)
	if held := current(svc, name, ranges); len(held) != len(ips) || slices.ContainsFunc(ips, func(ip netip.Addr) bool { return !slices.Contains(held, ip) }) {
		a.events.Eventf(svc, corev1.EventTypeNormal, "IPAllocated", "assigned %s from pool %s", strings.Join(ingress, ", "), name)
		a.log.Info("address assigned", "service", key, "ip", strings.Join(ingress, ","), "pool", name)
	}
	return a.set(ctx, svc, name, ingress)
}

// set writes the pool annotation (none: removed) and the ingress addresses.
func (a *allocator) set(ctx context.Context, svc *corev1.Service, pool string, ips []string) error {
	if svc.Annotations[AssignedAnnotation] != pool {
		svc = svc.DeepCopy()
		if pool == "" {
			delete(svc.Annotations, AssignedAnnotation)
		} else {
			if svc.Annotations == nil {
				svc.Annotations = map[string]string{}
			}
			svc.Annotations[AssignedAnnotation] = pool
		}
		updated, err := a.client.CoreV1().Services(svc.Namespace).Update(ctx, svc, metav1.UpdateOptions{FieldManager: "kedge-servicelb"})
		if err != nil {
			return err
		}
		svc = updated
	}
	var want []corev1.LoadBalancerIngress
	for _, ip := range ips {
		want = append(want, corev1.LoadBalancerIngress{IP: ip})
	}
	var have []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		have = append(have, in.IP)
	}
	if slices.Equal(have, ips) {
		return nil
	}
	svc = svc.DeepCopy()
	svc.Status.LoadBalancer.Ingress = want
	_, err := a.client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, svc, metav1.UpdateOptions{FieldManager: "kedge-servicelb"})
	return err
}

// nodeAddresses are the addresses of the nodes that may carry Services'
// traffic (not labelled AnnounceLabel=false): each node's ExternalIPs, or
// its InternalIPs when it has none; sorted.
func nodeAddresses(nodes []*corev1.Node) []string {
	var out []string
	for _, n := range nodes {
		if n.Labels[AnnounceLabel] == "false" {
			continue
		}
		var ext, internal []string
		for _, a := range n.Status.Addresses {
			switch a.Type {
			case corev1.NodeExternalIP:
				ext = append(ext, a.Address)
			case corev1.NodeInternalIP:
				internal = append(internal, a.Address)
			}
		}
		if len(ext) > 0 {
			out = append(out, ext...)
		} else {
			out = append(out, internal...)
		}
	}
	sort.Strings(out)
	return out
}
