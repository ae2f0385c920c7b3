package localstorage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"

	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/logging"
)

// VolumeMode is the mode of a volume's directory: writable by a pod of any
// UID (the storage root itself is 0700, so no host user reaches it).
const VolumeMode fs.FileMode = 0o777

// NodeConfig describes the local storage of one node.
type NodeConfig struct {
	NodeName string
	// Root is --default-local-storage-path (absolute, clean).
	Root string
	// Kubeconfig is the kubelet's: the node patches its own Node and, as
	// the manifest's policy allows, removes Finalizer from its volumes.
	Kubeconfig string
	Log        *slog.Logger
}

// Node creates and removes the directories of this node's volumes.
type Node struct {
	cfg NodeConfig
	component.Background
}

var _ component.Component = (*Node)(nil)

// NewNode returns the node's local storage; nothing runs until Start.
func NewNode(cfg NodeConfig) *Node { return &Node{cfg: cfg} }

// Name implements component.Component.
func (*Node) Name() string { return "local-storage" }

// Ready returns at once: pods do not wait for volumes they may not use.
func (*Node) Ready(context.Context) error { return nil }

// Start creates the storage root (0700) and, in the background, writes it
// to the Node (PathAnnotation) and keeps the volumes' directories.
func (n *Node) Start(ctx context.Context) error {
	if err := CheckRoot("--default-local-storage-path", n.cfg.Root); err != nil {
		return err
	}
	if err := os.MkdirAll(n.cfg.Root, 0o700); err != nil {
		return fmt.Errorf("--default-local-storage-path %s: %w", n.cfg.Root, err)
	}
	root, err := os.OpenRoot(n.cfg.Root)
	if err != nil {
		return fmt.Errorf("--default-local-storage-path %s: %w", n.cfg.Root, err)
	}
	rest, err := clientcmd.BuildConfigFromFlags("", n.cfg.Kubeconfig)
	if err != nil {
		_ = root.Close()
		return fmt.Errorf("kubeconfig %s: %w", n.cfg.Kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		_ = root.Close()
		return err
	}
	ctx, log := logging.WithComponent(n.Context(ctx), n.cfg.Log, n.Name())
	v := newVolumes(client, n.cfg.NodeName, n.cfg.Root, root, log)
	n.Go(func(ctx context.Context) error {
		defer root.Close()
		go annotate(ctx, client, n.cfg.NodeName, n.cfg.Root, log)
		return v.run(ctx)
	})
	return nil
}

// annotate writes root to the Node's PathAnnotation, retrying until the
// kubelet has registered the Node.
func annotate(ctx context.Context, client kubernetes.Interface, node, root string, log *slog.Logger) {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{PathAnnotation: root}}})
	for delay := time.Second; ; delay = min(2*delay, 10*time.Second) {
		_, err := client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "kedge-local-storage"})
		if err == nil {
			log.Debug("local storage path written to the Node", "node", node, "path", root)
			return
		}
		if !apierrors.IsNotFound(err) {
			log.Debug("local storage path not written to the Node yet; retrying", "node", node, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// volumes is the node's loop over its PersistentVolumes.
type volumes struct {
	client   kubernetes.Interface
	node     string
	rootPath string
	root     *os.Root
	log      *slog.Logger
	pvs      corelisters.PersistentVolumeLister
	factory  informers.SharedInformerFactory
	queue    workqueue.TypedRateLimitingInterface[string]
	warned   map[string]bool // volumes whose path is outside the root, logged once
}

func newVolumes(client kubernetes.Interface, node, rootPath string, root *os.Root, log *slog.Logger) *volumes {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = labels.SelectorFromSet(labels.Set{NodeLabel: node}).String()
	}))
	return &volumes{client: client, node: node, rootPath: rootPath, root: root, log: log,
		factory: factory, pvs: factory.Core().V1().PersistentVolumes().Lister(), warned: map[string]bool{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](500*time.Millisecond, 30*time.Second))}
}

// run syncs every volume of this node on each change, until ctx is done.
func (v *volumes) run(ctx context.Context) error {
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			v.queue.Add(key)
		}
	}
	_, _ = v.factory.Core().V1().PersistentVolumes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, n any) { enqueue(n) },
	})
	v.factory.Start(ctx.Done())
	defer v.factory.Shutdown()
	go func() {
		<-ctx.Done()
		v.queue.ShutDown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), v.factory.Core().V1().PersistentVolumes().Informer().HasSynced) {
		return nil
	}
	for v.next(ctx) {
	}
	return nil
}

func (v *volumes) next(ctx context.Context) bool {
	key, quit := v.queue.Get()
	if quit {
		return false
	}
	defer v.queue.Done(key)
	if err := v.sync(ctx, key); err != nil && ctx.Err() == nil {
		v.log.Warn("volume not synced; retrying", "pv", key, "err", err)
		v.queue.AddRateLimited(key)
		return true
	}
	v.queue.Forget(key)
	return true
}

// sync brings one volume's directory in line with its PersistentVolume:
// created while the volume exists, removed (policy Delete) or kept
// (Retain, Recycle) once it is being deleted, then the finalizer dropped.
func (v *volumes) sync(ctx context.Context, name string) error {
	pv, err := v.pvs.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	if pv.Annotations[NodeAnnotation] != v.node || pv.Spec.Local == nil {
		return nil // another node's, or not a local-path volume
	}
	dir, err := InRoot(v.rootPath, pv.Spec.Local.Path)
	if err != nil {
		// Made with another --default-local-storage-path, or by hand:
		// kedge touches nothing outside this node's root, and keeps the
		// finalizer (an administrator removes it, see docs/storage.md).
		if !v.warned[name] {
			v.log.Warn("volume left alone: its path is outside this node's storage root", "pv", name, "err", err)
			v.warned[name] = true
		}
		return nil
	}
	if pv.DeletionTimestamp == nil {
		return v.ensure(dir)
	}
	if !slices.Contains(pv.Finalizers, Finalizer) {
		return nil
	}
	if pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete {
		if err := v.root.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove %s: %w", pv.Spec.Local.Path, err)
		}
		v.log.Info("volume directory removed", "pv", name, "path", pv.Spec.Local.Path)
	} else {
		v.log.Info("volume deleted; its directory is kept (reclaim policy "+string(pv.Spec.PersistentVolumeReclaimPolicy)+")", "pv", name, "path", pv.Spec.Local.Path)
	}
	return v.dropFinalizer(ctx, pv)
}

// ensure creates a volume's directory (VolumeMode) unless it exists.
func (v *volumes) ensure(dir string) error {
	err := v.root.Mkdir(dir, VolumeMode)
	if errors.Is(err, fs.ErrExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("create %s/%s: %w", v.rootPath, dir, err)
	}
	if err := v.root.Chmod(dir, VolumeMode); err != nil { // past the umask
		return err
	}
	v.log.Info("volume directory created", "path", v.rootPath+"/"+dir)
	return nil
}

// dropFinalizer removes Finalizer, and only it, from pv: a JSON patch that
// fails if the finalizers changed meanwhile.
func (v *volumes) dropFinalizer(ctx context.Context, pv *corev1.PersistentVolume) error {
	keep := slices.DeleteFunc(slices.Clone(pv.Finalizers), func(f string) bool { return f == Finalizer })
	patch, _ := json.Marshal([]map[string]any{
		{"op": "test", "path": "/metadata/finalizers", "value": pv.Finalizers},
		{"op": "replace", "path": "/metadata/finalizers", "value": keep},
	})
	_, err := v.client.CoreV1().PersistentVolumes().Patch(ctx, pv.Name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "kedge-local-storage"})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
