package localstorage

import (
	"context"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"

	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/leader"
	"github.com/kedge-io/kedge/pkg/logging"
)

// LeaseName is the Lease in kube-system electing the server that provisions.
const LeaseName = "kedge-local-path"

// ControllerConfig describes the provisioner of one server.
type ControllerConfig struct {
	Kubeconfig string // admin: it creates PersistentVolumes and records Events
	Log        *slog.Logger
}

// Controller runs the provisioner while its server leads.
type Controller struct {
	cfg ControllerConfig
	component.Background
}

var _ component.Component = (*Controller)(nil)

// NewController returns the controller; nothing runs until Start.
func NewController(cfg ControllerConfig) *Controller { return &Controller{cfg: cfg} }

// Name implements component.Component.
func (*Controller) Name() string { return "local-path-provisioner" }

// Ready returns at once (a server that does not lead is ready too).
func (*Controller) Ready(context.Context) error { return nil }

// Start campaigns for LeaseName in the background. A lost lease is
// campaigned for again: the library's controller is built anew for each
// term (its informers and queues are its own, it registers no metrics).
func (c *Controller) Start(ctx context.Context) error {
	rest, err := clientcmd.BuildConfigFromFlags("", c.cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", c.cfg.Kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return err
	}
	// The library logs through klog.FromContext: upstream's level (errors,
	// or more with --debug), as every embedded component.
	ctx, log := logging.WithComponent(c.Context(ctx), c.cfg.Log, c.Name())
	c.Go(func(context.Context) error {
		return leader.Campaign(ctx, client, LeaseName, log, func(ctx context.Context) error {
			newProvisionController(ctx, client).Run(ctx) // until ctx is done
			return nil
		})
	})
	return nil
}

// newProvisionController is the library's controller for ProvisionerName,
// without its own leader election (kedge's Lease above) and metrics server.
func newProvisionController(ctx context.Context, client kubernetes.Interface) *controller.ProvisionController {
	p := &Provisioner{Node: func(ctx context.Context, name string) (*corev1.Node, error) {
		return client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	}}
	return controller.NewProvisionController(ctx, client, ProvisionerName, p,
		controller.LeaderElection(false),
		controller.MetricsPort(0),
		controller.Threadiness(2),
		// The default backs a failed claim off from 15 s up to 1000 s; a
		// node that reports its storage path a moment late should not
		// delay its first pod by minutes.
		controller.ExponentialBackOffOnError(false),
	)
}
