// Package etcdnode ties a server's Node to its etcd member: each server puts
// a finalizer on its own Node, and when such a Node is deleted
// (`kubectl delete node`), the server's etcd member is removed before the
// Node goes — if the cluster keeps its quorum. Every server runs the
// controller; the first to act removes the member and the others find it
// gone.
//
//	m.Add(etcdnode.New(etcdnode.Config{Kubeconfig: admin, NodeName: "a", Etcd: local, Log: log}))
package etcdnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"

	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/etcd"
)

// Finalizer marks the Node of a server: its deletion removes the server's
// etcd member first.
const Finalizer = "kedge.io/etcd-member"

// retryRefused is how soon a removal refused for quorum is tried again.
const retryRefused = 15 * time.Second

// Config configures the controller.
type Config struct {
	Kubeconfig string // admin kubeconfig of the local apiserver
	// NodeName is this server's Node, which gets the finalizer; "" when the
	// server runs no node components (--disable-agent) and so has no Node.
	NodeName string
	// Etcd returns a client of the local etcd member (shared, not closed).
	Etcd func() (*clientv3.Client, error)
	Log  *slog.Logger
}

// Controller is the component.
type Controller struct {
	cfg    Config
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ component.Component = (*Controller)(nil)

// New returns the controller; nothing runs until Start.
func New(cfg Config) *Controller { return &Controller{cfg: cfg} }

// Name implements component.Component.
func (*Controller) Name() string { return "etcd-node" }

// Start watches Nodes and runs one worker.
func (c *Controller) Start(ctx context.Context) error {
	rest, err := clientcmd.BuildConfigFromFlags("", c.cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("etcd-node: kubeconfig %s: %w", c.cfg.Kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return fmt.Errorf("etcd-node: %w", err)
	}
	ctx, c.cancel = context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactory(client, 0)
	nodes := factory.Core().V1().Nodes()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return fmt.Errorf("etcd-node: %w", err)
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	r := &reconciler{
		own:    c.cfg.NodeName,
		client: client,
		remove: func(ctx context.Context, name string) (etcd.Member, error) {
			ec, err := c.cfg.Etcd()
			if err != nil {
				return etcd.Member{}, err
			}
			return etcd.RemoveMember(ctx, ec, name)
		},
		nodes:    nodes.Lister(),
		recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kedge-etcd-node"}),
		log:      c.cfg.Log.With("component", "etcd-node"),
	}
	factory.Start(ctx.Done())
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer broadcaster.Shutdown()
		defer queue.ShutDown()
		if !cache.WaitForCacheSync(ctx.Done(), nodes.Informer().HasSynced) {
			return
		}
		go func() { <-ctx.Done(); queue.ShutDown() }()
		for {
			key, quit := queue.Get()
			if quit {
				return
			}
			again, err := r.reconcile(ctx, key)
			switch {
			case err != nil:
				r.log.Warn("node reconcile failed; retrying", "node", key, "err", err)
				queue.AddRateLimited(key)
			case again > 0:
				queue.Forget(key)
				queue.AddAfter(key, again)
			default:
				queue.Forget(key)
			}
			queue.Done(key)
		}
	}()
	return nil
}

// Ready implements component.Component.
func (*Controller) Ready(context.Context) error { return nil }

// Stop ends the worker and the informer.
func (c *Controller) Stop(ctx context.Context) error {
	if c.cancel == nil {
		return nil
	}
	c.cancel()
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type reconciler struct {
	own    string // this server's Node
	client kubernetes.Interface
	// remove removes the etcd member called name, if the quorum allows.
	remove   func(ctx context.Context, name string) (etcd.Member, error)
	nodes    listersv1.NodeLister
	recorder record.EventRecorder
	log      *slog.Logger
}

// reconcile puts the finalizer on this server's Node and, for a deleted
// Node carrying it, removes the etcd member of the same name before it lets
// the Node go. It returns a delay after which to look again (a removal
// refused for quorum), or an error to retry with backoff.
func (r *reconciler) reconcile(ctx context.Context, name string) (time.Duration, error) {
	node, err := r.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	has := slices.Contains(node.Finalizers, Finalizer)
	if node.DeletionTimestamp == nil {
		if name == r.own && !has {
			return 0, r.setFinalizer(ctx, name, true)
		}
		return 0, nil
	}
	if !has {
		return 0, nil
	}
	m, err := r.remove(ctx, name)
	var notFound *etcd.NotFoundError
	var quorum *etcd.QuorumError
	switch {
	case errors.As(err, &notFound), isMemberNotFound(err):
		r.log.Info("deleted server Node has no etcd member (left already)", "node", name)
	case errors.Is(err, etcd.ErrOnlyMember):
		r.log.Warn("deleted Node's server is the only etcd member; its membership is kept", "node", name)
		r.recorder.Event(node, corev1.EventTypeWarning, "EtcdMemberKept", err.Error())
	case errors.As(err, &quorum):
		r.log.Warn("deleted Node's etcd member not removed yet", "node", name, "reason", err)
		r.recorder.Event(node, corev1.EventTypeWarning, "EtcdMemberRemovalRefused", err.Error()+"; the Node stays until it can be removed")
		return retryRefused, nil
	case err != nil:
		return 0, err
	default:
		r.log.Info("removed the etcd member of a deleted server Node", "node", name, "member", fmt.Sprintf("%x", m.ID))
	}
	return 0, r.setFinalizer(ctx, name, false)
}

// setFinalizer adds (on) or removes kedge's finalizer on the Node.
func (r *reconciler) setFinalizer(ctx context.Context, name string, on bool) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := r.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		has := slices.Contains(node.Finalizers, Finalizer)
		switch {
		case on && !has:
			node.Finalizers = append(node.Finalizers, Finalizer)
		case !on && has:
			node.Finalizers = slices.DeleteFunc(node.Finalizers, func(f string) bool { return f == Finalizer })
		default:
			return nil
		}
		_, err = r.client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node %s: finalizer %s: %w", name, Finalizer, err)
	}
	return nil
}

// isMemberNotFound: another server removed the member first.
func isMemberNotFound(err error) bool {
	return errors.Is(err, rpctypes.ErrMemberNotFound) || errors.Is(err, rpctypes.ErrGRPCMemberNotFound)
}
