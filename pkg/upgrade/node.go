package upgrade

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kedge-io/kedge/pkg/component"
)

// NodeConfig configures a node's Upgrader.
type NodeConfig struct {
	NodeName   string
	Kubeconfig string // the kubelet's: a node may read and annotate its own Node
	Version    string // the kedge version this process runs
	Dir        string // where the new binary is fetched to (<data-dir>/agent/upgrade)
	// Executable is the binary to replace; empty: this process's (os.Executable).
	Executable string
	Poll       time.Duration // how often the Node is read; default 5 s
	Log        *slog.Logger
}

// Upgrader is the node component: it records the node's kedge version on
// its Node and carries out the plan the controller annotates there.
type Upgrader struct {
	component.Background
	cfg    NodeConfig
	client kubernetes.Interface
	failed string // the plan that failed here (not retried until it changes)
}

// NewUpgrader returns a node's Upgrader.
func NewUpgrader(cfg NodeConfig) *Upgrader {
	if cfg.Poll == 0 {
		cfg.Poll = 5 * time.Second
	}
	return &Upgrader{cfg: cfg}
}

// Name implements component.Component.
func (u *Upgrader) Name() string { return "upgrader" }

// Start implements component.Component.
func (u *Upgrader) Start(ctx context.Context) error {
	rc, err := clientcmd.BuildConfigFromFlags("", u.cfg.Kubeconfig)
	if err != nil {
		return err
	}
	rc.UserAgent = "kedge-upgrader"
	if u.client, err = kubernetes.NewForConfig(rc); err != nil {
		return err
	}
	u.Context(ctx)
	u.Go(u.run)
	return nil
}

// Ready implements component.Component: the Upgrader works in the
// background.
func (u *Upgrader) Ready(context.Context) error { return nil }

func (u *Upgrader) run(ctx context.Context) error {
	recorded := false
	tick := time.NewTicker(u.cfg.Poll)
	defer tick.Stop()
	for {
		node, err := u.client.CoreV1().Nodes().Get(ctx, u.cfg.NodeName, metav1.GetOptions{})
		switch {
		case err == nil && !recorded:
			if err := u.annotate(ctx, VersionAnnotation, u.cfg.Version); err == nil {
				recorded = true
			} else {
				u.cfg.Log.Debug("recording the version on the Node", "component", u.Name(), "err", err)
			}
		case err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil:
			u.cfg.Log.Debug("reading the Node", "component", u.Name(), "err", err)
		}
		if err == nil && recorded {
			if err := u.carryOut(ctx, node); err != nil {
				return err // ErrRestart
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// carryOut runs the Node's plan if it asks for another version; it returns
// ErrRestart once the new binary is installed.
func (u *Upgrader) carryOut(ctx context.Context, node *corev1.Node) error {
	raw := node.Annotations[PlanAnnotation]
	if raw == "" || raw == u.failed {
		return nil
	}
	plan, err := ParsePlan(raw)
	if err != nil {
		u.fail(ctx, raw, "", err)
		return nil
	}
	if plan.Version == u.cfg.Version {
		return nil // done: the controller uncordons and removes the plan
	}
	log := u.cfg.Log.With("component", u.Name(), "upgrade", plan.Upgrade, "version", plan.Version)
	log.Info("upgrading kedge", "from", u.cfg.Version, "source", source(plan, binaryName()))
	exe := u.cfg.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			u.fail(ctx, raw, plan.Version, err)
			return nil
		}
	}
	fetched := filepath.Join(u.cfg.Dir, "kedge")
	begin := time.Now()
	if err := fetch(ctx, plan, fetched); err != nil {
		u.fail(ctx, raw, plan.Version, err)
		return nil
	}
	defer os.Remove(fetched)
	if err := install(fetched, exe); err != nil {
		u.fail(ctx, raw, plan.Version, fmt.Errorf("install over %s: %w", exe, err))
		return nil
	}
	log.Info("new binary installed: restarting", "path", exe, "took", time.Since(begin).Round(time.Millisecond))
	return fmt.Errorf("kedge %s installed at %s: %w", plan.Version, exe, ErrRestart)
}

// fail records a failed plan on the Node (the controller stops there).
func (u *Upgrader) fail(ctx context.Context, raw, version string, err error) {
	u.failed = raw
	u.cfg.Log.Error("upgrade failed", "component", u.Name(), "version", version, "err", err)
	if aerr := u.annotate(ctx, ErrorAnnotation, version+": "+err.Error()); aerr != nil {
		u.cfg.Log.Warn("recording the failed upgrade on the Node", "component", u.Name(), "err", aerr)
	}
}

// annotate sets one annotation of the node's own Node (a merge patch).
func (u *Upgrader) annotate(ctx context.Context, key, value string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}})
	if err != nil {
		return err
	}
	_, err = u.client.CoreV1().Nodes().Patch(ctx, u.cfg.NodeName, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}
