package nodemeta

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/logging"
)

// ErrNotRegistered is returned by an Apply while the kubelet has not
// registered the Node yet; the Syncer tries again.
var ErrNotRegistered = errors.New("the Node is not registered yet")

// Apply brings one Node's labels and taints in line with a Spec. An error
// that wraps a permanent refusal (Permanent says so) is not retried.
type Apply func(ctx context.Context, node string, want Spec) error

// SyncerConfig describes a Syncer.
type SyncerConfig struct {
	NodeName string
	Spec     Spec
	// Apply does the work: AdminApply on servers, a call to the
	// supervisor on agents.
	Apply Apply
	// Permanent says whether an error of Apply ends the sync (nil: none does).
	Permanent func(error) bool
	Log       *slog.Logger
}

// Syncer applies a node's Spec once its Node exists, in the background, on
// every start of the node. It never holds up the node's start: pods do not
// wait for labels the kubelet could not register itself.
type Syncer struct {
	cfg SyncerConfig
	component.Background
}

var _ component.Component = (*Syncer)(nil)

// NewSyncer returns the syncer; nothing runs until Start.
func NewSyncer(cfg SyncerConfig) *Syncer { return &Syncer{cfg: cfg} }

// Name implements component.Component.
func (*Syncer) Name() string { return "node-config" }

// Start tries Apply every 2 s (up to 10 s apart) until it succeeds.
func (s *Syncer) Start(ctx context.Context) error {
	base := s.cfg.Log
	if base == nil {
		base = slog.Default()
	}
	ctx, log := logging.WithComponent(s.Context(ctx), base, "node-config")
	s.Go(func(ctx context.Context) error {
		delay := time.Second
		var lastLog time.Time
		for {
			err := s.cfg.Apply(ctx, s.cfg.NodeName, s.cfg.Spec)
			switch {
			case err == nil:
				log.Debug("node labels and taints in sync", "node", s.cfg.NodeName, "labels", len(s.cfg.Spec.Labels), "taints", len(s.cfg.Spec.Taints))
				<-ctx.Done()
				return nil
			case s.cfg.Permanent != nil && s.cfg.Permanent(err):
				log.Error("node labels and taints not applied", "node", s.cfg.NodeName, "err", err)
				<-ctx.Done()
				return nil
			case !errors.Is(err, ErrNotRegistered) && time.Since(lastLog) > 30*time.Second:
				log.Warn("node labels and taints not applied yet; retrying", "node", s.cfg.NodeName, "err", err)
				lastLog = time.Now()
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(delay):
			}
			delay = min(2*delay, 10*time.Second)
		}
	})
	return nil
}

// Ready returns at once (see Syncer).
func (*Syncer) Ready(context.Context) error { return nil }

// AdminApply returns the Apply of a server's own node: with admin
// credentials it sets every label (those only another client than the
// kubelet may set too) and the taints, recording them in AppliedAnnotation.
// newClient is called on each attempt until it succeeds.
func AdminApply(newClient func() (kubernetes.Interface, error)) Apply {
	var client kubernetes.Interface
	return func(ctx context.Context, name string, want Spec) error {
		if client == nil {
			c, err := newClient()
			if err != nil {
				return err
			}
			client = c
		}
		return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
			nodes := client.CoreV1().Nodes()
			node, err := nodes.Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return ErrNotRegistered
			} else if err != nil {
				return err
			}
			after, changed := Reconcile(node, want, Decode(node.Annotations[AppliedAnnotation]), Scope{Labels: true, Taints: true})
			record := after.Encode()
			if !changed && node.Annotations[AppliedAnnotation] == record {
				return nil
			}
			if node.Annotations == nil {
				node.Annotations = map[string]string{}
			}
			node.Annotations[AppliedAnnotation] = record
			if _, err := nodes.Update(ctx, node, metav1.UpdateOptions{FieldManager: "kedge"}); err != nil {
				return fmt.Errorf("update Node %s: %w", name, err)
			}
			return nil
		})
	}
}
