package controllermanager

import (
	"context"
	"errors"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/informers"
	restclient "k8s.io/client-go/rest"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"
	"k8s.io/controller-manager/pkg/clientbuilder"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app/config"
	"k8s.io/kubernetes/cmd/kube-controller-manager/names"
)

// splitNodeIPAM takes the node IPAM controller out of c and returns a
// configuration that runs it alone (nil when c does not run it).
//
// Upstream builds every controller (about 45, several with API discovery)
// before it starts any, which takes seconds; a new node waits for its pod
// CIDR from the node IPAM controller before the pod network, and so the node,
// can be ready. Run on its own, ahead of the others, it assigns the CIDR as
// soon as the Node registers. It is the same upstream controller, with the
// same settings, under the same leader election.
func splitNodeIPAM(c *config.Config) *config.Config {
	controllers := c.ComponentConfig.Generic.Controllers
	desc := app.NewControllerDescriptors()[names.NodeIpamController]
	if desc == nil || !(app.ControllerContext{ComponentConfig: c.ComponentConfig}).IsControllerEnabled(desc) {
		return nil
	}
	alone := *c
	alone.ComponentConfig.Generic.Controllers = []string{names.NodeIpamController}
	// The first entry naming a controller decides (controller-manager's
	// IsControllerEnabled), so this turns it off whatever the list says.
	c.ComponentConfig.Generic.Controllers = append([]string{"-" + names.NodeIpamController}, slices.Clone(controllers)...)
	return &alone
}

// runAlone runs the controllers enabled in c (the node IPAM controller) as
// kube-controller-manager's Run does, without its HTTP server, until ctx
// ends: a controller context with its own informers, the controllers built,
// the informers started, then the controllers. The context is built here,
// not by app.CreateControllerContext, which registers a process-wide
// informer name that the other controllers' context takes.
func runAlone(ctx context.Context, c *config.CompletedConfig) error {
	root := clientbuilder.SimpleControllerClientBuilder{ClientConfig: c.Kubeconfig}
	var builder clientbuilder.ControllerClientBuilder = root
	if c.ComponentConfig.KubeCloudShared.UseServiceAccountCredentials {
		// As upstream: each controller as its own service account.
		builder = clientbuilder.NewDynamicClientBuilder(restclient.AnonymousClientConfig(c.Kubeconfig), c.Client.CoreV1(), metav1.NamespaceSystem)
	}
	client, err := root.Client("node-ipam-informers")
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, app.ResyncPeriod(c)(), informers.WithTransform(dropManagedFields))
	cctx := app.ControllerContext{
		ClientBuilder:            builder,
		InformerFactory:          factory,
		ComponentConfig:          c.ComponentConfig,
		InformersStarted:         make(chan struct{}),
		ResyncPeriod:             app.ResyncPeriod(c),
		ControllerManagerMetrics: controllersmetrics.NewControllerManagerMetrics("kube-controller-manager"),
	}
	descriptors := map[string]*app.ControllerDescriptor{}
	for name, d := range app.NewControllerDescriptors() {
		if slices.Contains(c.ComponentConfig.Generic.Controllers, name) {
			descriptors[name] = d
		}
	}
	controllers, err := app.BuildControllers(ctx, cctx, descriptors, nil, noHealthChecks{})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	close(cctx.InformersStarted)
	if len(controllers) == 0 { // e.g. allocate-node-cidrs=false
		<-ctx.Done()
		return nil
	}
	if !app.RunControllers(ctx, cctx, controllers, 0, c.ControllerShutdownTimeout) {
		return errors.New("node IPAM controller: shutdown timeout reached")
	}
	return nil
}

// dropManagedFields trims what the controllers never read from the cached
// objects, as kube-controller-manager's informers do.
func dropManagedFields(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil && a.GetManagedFields() != nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}

// noHealthChecks drops the controllers' health checks: there is no HTTP
// server for them (the other controllers' server has its own).
type noHealthChecks struct{}

func (noHealthChecks) AddHealthChecker(...healthz.HealthChecker) {}
