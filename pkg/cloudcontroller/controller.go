package cloudcontroller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	nodecontroller "k8s.io/cloud-provider/controllers/node"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"

	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/leader"
	"github.com/kedge-io/kedge/pkg/logging"
)

// LeaseName is the Lease in kube-system that elects the one server whose
// cloud controller runs.
const LeaseName = "kedge-cloud-controller"

// StatusEvery is how often the controller reconciles every initialized
// Node's addresses: a changed --node-external-ip shows within it.
const StatusEvery = 10 * time.Second

// Config describes the cloud controller of one server.
type Config struct {
	Kubeconfig string // an admin client: it updates Nodes and their status
	Log        *slog.Logger
}

// Controller runs the cloud node controller while this server holds the lease.
type Controller struct {
	cfg Config
	component.Background
}

var _ component.Component = (*Controller)(nil)

// New returns the controller; nothing runs until Start.
func New(cfg Config) *Controller { return &Controller{cfg: cfg} }

// Name implements component.Component.
func (*Controller) Name() string { return "cloud-controller" }

// Start campaigns for the lease in the background; the leader runs the
// controller until the lease or ctx ends.
func (c *Controller) Start(ctx context.Context) error {
	rest, err := clientcmd.BuildConfigFromFlags("", c.cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", c.cfg.Kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return err
	}
	ctx, log := logging.WithComponent(c.Context(ctx), c.cfg.Log, "cloud-controller")
	c.Go(func(context.Context) error {
		return leader.Campaign(ctx, client, LeaseName, log, func(ctx context.Context) error { return run(ctx, client) })
	})
	return nil
}

// run runs upstream's cloud node controller with kedge's provider until ctx ends.
func run(ctx context.Context, client kubernetes.Interface) error {
	factory := informers.NewSharedInformerFactory(client, 0)
	cnc, err := nodecontroller.NewCloudNodeController(factory.Core().V1().Nodes(), client, provider{}, StatusEvery, 1, 1)
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	cnc.RunWithContext(ctx, controllersmetrics.NewControllerManagerMetrics("kedge-cloud-controller"))
	if ctx.Err() == nil {
		return errors.New("cloud node controller stopped")
	}
	return nil
}

// Ready returns at once: a server that does not lead is ready too.
func (*Controller) Ready(context.Context) error { return nil }
