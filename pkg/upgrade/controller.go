package upgrade

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubectl/pkg/drain"

	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/leader"
	"github.com/kedge-io/kedge/pkg/logging"
)

// LeaseName is the controller's leader election Lease in kube-system.
const LeaseName = "kedge-upgrade"

// ControlPlaneLabel marks the Nodes of servers (upgraded first).
const ControlPlaneLabel = "node-role.kubernetes.io/control-plane"

// ControllerConfig configures the upgrade controller.
type ControllerConfig struct {
	Kubeconfig string // an admin client
	// NodeTimeout is how long a node may take from its plan to Ready with
	// the new version; default 10 minutes.
	NodeTimeout time.Duration
	// DrainTimeout bounds a node's drain; default 5 minutes.
	DrainTimeout time.Duration
	Poll         time.Duration // default 5 s
	Log          *slog.Logger
}

// Controller walks the nodes of each Upgrade while its server leads.
type Controller struct {
	component.Background
	cfg ControllerConfig
}

// NewController returns the controller; nothing runs until Start.
func NewController(cfg ControllerConfig) *Controller {
	if cfg.NodeTimeout == 0 {
		cfg.NodeTimeout = 10 * time.Minute
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 5 * time.Minute
	}
	if cfg.Poll == 0 {
		cfg.Poll = 5 * time.Second
	}
	return &Controller{cfg: cfg}
}

// Name implements component.Component.
func (*Controller) Name() string { return "upgrade-controller" }

// Ready returns at once (a server that does not lead is ready too).
func (*Controller) Ready(context.Context) error { return nil }

// Start campaigns for LeaseName in the background.
func (c *Controller) Start(ctx context.Context) error {
	rc, err := clientcmd.BuildConfigFromFlags("", c.cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", c.cfg.Kubeconfig, err)
	}
	rc.UserAgent = "kedge-upgrade-controller"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	ctx, log := logging.WithComponent(c.Context(ctx), c.cfg.Log, c.Name())
	c.Go(func(context.Context) error {
		return leader.Campaign(ctx, client, LeaseName, log, func(ctx context.Context) error {
			// A walker a term: what it started, it started as this leader.
			w := &walker{cfg: c.cfg, client: client, upgrades: dyn.Resource(Resource), log: log, started: map[string]time.Time{}}
			return w.run(ctx)
		})
	})
	return nil
}

// walker is the controller's loop while it leads. Its state is the
// Upgrades' status and the Nodes' annotations, so another server that
// takes over carries on where it stopped.
type walker struct {
	cfg      ControllerConfig
	client   kubernetes.Interface
	upgrades dynamic.NamespaceableResourceInterface
	log      *slog.Logger
	started  map[string]time.Time // node → when its plan was handed over (by this leader)
}

func (w *walker) run(ctx context.Context) error {
	tick := time.NewTicker(w.cfg.Poll)
	defer tick.Stop()
	for {
		if err := w.pass(ctx); err != nil && ctx.Err() == nil {
			w.log.Debug("upgrade pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// pass works on the oldest unfinished Upgrade (one at a time).
func (w *walker) pass(ctx context.Context) error {
	list, err := w.upgrades.List(ctx, metav1.ListOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil // the CRD is not there yet
		}
		return err
	}
	items := list.Items
	slices.SortFunc(items, func(a, b unstructured.Unstructured) int {
		return a.GetCreationTimestamp().Compare(b.GetCreationTimestamp().Time)
	})
	for i := range items {
		u, err := fromUnstructured(&items[i])
		if err != nil {
			w.log.Warn("bad Upgrade", "err", err)
			continue
		}
		if u.Status.Phase == Succeeded || u.Status.Phase == Failed {
			continue
		}
		return w.step(ctx, u)
	}
	return nil
}

// step advances one Upgrade and writes its status.
func (w *walker) step(ctx context.Context, u Upgrade) error {
	nodes, err := w.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	order := upgradeOrder(nodes.Items)
	st := Status{Phase: Running}
	var active, waiting, failed []*corev1.Node
	for _, n := range order {
		ns := NodeStatus{Name: n.Name}
		plan, _ := ParsePlan(n.Annotations[PlanAnnotation])
		mine := plan.Upgrade == u.Name
		switch {
		case n.Annotations[VersionAnnotation] == u.Spec.Version && ready(n) && !(mine && n.Annotations[CordonedAnnotation] != ""):
			ns.Phase = Succeeded
		case mine && strings.HasPrefix(n.Annotations[ErrorAnnotation], u.Spec.Version+": "):
			ns.Phase, ns.Message = Failed, strings.TrimPrefix(n.Annotations[ErrorAnnotation], u.Spec.Version+": ")
			failed = append(failed, n)
		case mine:
			ns.Phase = Running
			active = append(active, n)
		default:
			ns.Phase = Pending
			waiting = append(waiting, n)
		}
		st.Nodes = append(st.Nodes, ns)
	}
	// Finish the nodes in progress: Ready with the new version → uncordon.
	inProgress := active
	active = nil
	for _, n := range inProgress {
		i := slices.IndexFunc(st.Nodes, func(s NodeStatus) bool { return s.Name == n.Name })
		if n.Annotations[VersionAnnotation] == u.Spec.Version && ready(n) {
			if err := w.finish(ctx, n); err != nil {
				return err
			}
			st.Nodes[i].Phase, st.Nodes[i].Message = Succeeded, ""
			continue
		}
		active = append(active, n)
		begin, ok := w.started[n.Name]
		if !ok {
			begin = time.Now() // a leader that took over counts from now
			w.started[n.Name] = begin
		}
		if time.Since(begin) > w.cfg.NodeTimeout {
			st.Nodes[i].Phase, st.Nodes[i].Message = Failed, fmt.Sprintf("not Ready with %s after %s (it runs %q)", u.Spec.Version, w.cfg.NodeTimeout, n.Annotations[VersionAnnotation])
		} else {
			st.Nodes[i].Message = "waiting for the node to restart with " + u.Spec.Version
		}
	}
	if why := failedNodes(st); why != "" {
		st.Phase, st.Message = Failed, "stopped at the first failure: "+why
		for _, n := range append(active, failed...) {
			_ = w.uncordon(ctx, n) // it still runs its old binary
		}
		return w.writeStatus(ctx, u, st)
	}
	serversDone := true
	for i, n := range order {
		if isServer(n) && st.Nodes[i].Phase != Succeeded {
			serversDone = false
		}
	}
	// Start the next nodes: a server alone; agents once every server is
	// done, concurrency at a time.
	for _, n := range waiting {
		limit := u.Spec.Concurrency
		if isServer(n) {
			limit = 1
		} else if !serversDone {
			break
		}
		if len(active) >= limit || (len(active) > 0 && isServer(active[0]) != isServer(n)) {
			break
		}
		i := slices.IndexFunc(st.Nodes, func(s NodeStatus) bool { return s.Name == n.Name })
		if err := w.begin(ctx, u, n); err != nil {
			st.Nodes[i].Phase, st.Nodes[i].Message = Failed, err.Error()
			st.Phase, st.Message = Failed, fmt.Sprintf("stopped at the first failure: %s: %v", n.Name, err)
			_ = w.uncordon(ctx, n)
			return w.writeStatus(ctx, u, st)
		}
		st.Nodes[i].Phase, st.Nodes[i].Message = Running, "binary handed over"
		active = append(active, n)
	}
	if !slices.ContainsFunc(st.Nodes, func(s NodeStatus) bool { return s.Phase != Succeeded }) {
		st.Phase, st.Message = Succeeded, fmt.Sprintf("%d nodes run %s", len(st.Nodes), u.Spec.Version)
	} else if len(active) > 0 {
		st.Message = "upgrading " + active[0].Name
	}
	return w.writeStatus(ctx, u, st)
}

// begin cordons and drains n, then hands it the plan.
func (w *walker) begin(ctx context.Context, u Upgrade, n *corev1.Node) error {
	w.log.Info("upgrading node", "upgrade", u.Name, "node", n.Name, "version", u.Spec.Version, "from", n.Annotations[VersionAnnotation])
	helper := &drain.Helper{
		Ctx: ctx, Client: w.client, Force: true, IgnoreAllDaemonSets: true, DeleteEmptyDirData: true,
		GracePeriodSeconds: -1, Timeout: w.cfg.DrainTimeout, Out: io.Discard, ErrOut: io.Discard,
	}
	annotations := map[string]any{
		PlanAnnotation:  Plan{Upgrade: u.Name, Version: u.Spec.Version, URL: u.Spec.URL, Path: u.Spec.Path}.String(),
		ErrorAnnotation: nil, // a failure of an earlier Upgrade is history
	}
	if !n.Spec.Unschedulable {
		if err := drain.RunCordonOrUncordon(helper, n, true); err != nil {
			return fmt.Errorf("cordon: %w", err)
		}
		annotations[CordonedAnnotation] = "true"
	}
	if err := w.annotate(ctx, n.Name, map[string]any{CordonedAnnotation: annotations[CordonedAnnotation]}); err != nil {
		return err
	}
	if u.Spec.drain() {
		if err := drain.RunNodeDrain(helper, n.Name); err != nil {
			return fmt.Errorf("drain: %w", err)
		}
	}
	w.started[n.Name] = time.Now()
	return w.annotate(ctx, n.Name, annotations)
}

// finish uncordons a node the controller cordoned and removes the plan.
func (w *walker) finish(ctx context.Context, n *corev1.Node) error {
	w.log.Info("node upgraded", "node", n.Name, "version", n.Annotations[VersionAnnotation])
	delete(w.started, n.Name)
	if err := w.uncordon(ctx, n); err != nil {
		return err
	}
	return w.annotate(ctx, n.Name, map[string]any{PlanAnnotation: nil})
}

// uncordon makes n schedulable again if the controller cordoned it.
func (w *walker) uncordon(ctx context.Context, n *corev1.Node) error {
	if n.Annotations[CordonedAnnotation] == "" {
		return nil
	}
	helper := &drain.Helper{Ctx: ctx, Client: w.client, Out: io.Discard, ErrOut: io.Discard}
	if err := drain.RunCordonOrUncordon(helper, n, false); err != nil {
		return fmt.Errorf("uncordon %s: %w", n.Name, err)
	}
	return w.annotate(ctx, n.Name, map[string]any{CordonedAnnotation: nil})
}

// annotate merge-patches annotations of a Node (nil removes one).
func (w *walker) annotate(ctx context.Context, node string, annotations map[string]any) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		return err
	}
	_, err = w.client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// writeStatus stores st as u's status (the status subresource).
func (w *walker) writeStatus(ctx context.Context, u Upgrade, st Status) error {
	if statusEqual(u.Status, st) {
		return nil
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"status": obj})
	if err != nil {
		return err
	}
	_, err = w.upgrades.Patch(ctx, u.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if err == nil && st.Phase != u.Status.Phase {
		w.log.Info("upgrade "+strings.ToLower(st.Phase), "upgrade", u.Name, "version", u.Spec.Version, "message", st.Message)
	}
	return err
}

func statusEqual(a, b Status) bool {
	ra, _ := json.Marshal(a)
	rb, _ := json.Marshal(b)
	return string(ra) == string(rb)
}

// upgradeOrder is the safe order: servers, then agents, each by name.
func upgradeOrder(nodes []corev1.Node) []*corev1.Node {
	out := make([]*corev1.Node, 0, len(nodes))
	for i := range nodes {
		out = append(out, &nodes[i])
	}
	slices.SortFunc(out, func(a, b *corev1.Node) int {
		if sa, sb := isServer(a), isServer(b); sa != sb {
			if sa {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

func isServer(n *corev1.Node) bool {
	_, ok := n.Labels[ControlPlaneLabel]
	return ok
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// failedNodes names the failed nodes and why, or "".
func failedNodes(st Status) string {
	var out []string
	for _, n := range st.Nodes {
		if n.Phase == Failed {
			out = append(out, n.Name+": "+n.Message)
		}
	}
	return strings.Join(out, "; ")
}
