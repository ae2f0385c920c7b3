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

// earlyControllers are the controllers a new cluster's first pod waits for,
// in upstream's names:
//   - node IPAM: a new node waits for its pod CIDR before its pod network,
//     and so the node, can be ready;
//   - node lifecycle: it removes the not-ready taint the kubelet registers
//     its Node with, once the Node is Ready; until then nothing schedules;
//   - service account: it creates each namespace's "default" service
//     account, without which the apiserver refuses pods.
var earlyControllers = []string{names.NodeIpamController, names.NodeLifecycleController, names.ServiceAccountController}

// splitEarly takes the enabled early controllers out of c and returns a
// configuration that runs them alone (nil when c runs none of them).
//
// Upstream builds every controller (about 45, several with API discovery)
// before it starts any, which takes seconds. Run on their own, ahead of the
// others, the early ones act as soon as there is something to do: the pod
// CIDR is set ~70 ms after the Node registers. They are the same upstream
// controllers, with the same settings, under the same leader election.
func splitEarly(c *config.Config) *config.Config {
	controllers := c.ComponentConfig.Generic.Controllers
	descriptors := app.NewControllerDescriptors()
	enabled := app.ControllerContext{ComponentConfig: c.ComponentConfig}
	var early, off []string
	for _, name := range earlyControllers {
		if d := descriptors[name]; d != nil && enabled.IsControllerEnabled(d) {
			early = append(early, name)
			off = append(off, "-"+name)
		}
	}
	if len(early) == 0 {
		return nil
	}
	alone := *c
	alone.ComponentConfig.Generic.Controllers = early
	// The first entry naming a controller decides (controller-manager's
	// IsControllerEnabled), so this turns them off whatever the list says.
	c.ComponentConfig.Generic.Controllers = append(off, slices.Clone(controllers)...)
	return &alone
}

// runAlone runs the controllers enabled in c (the early controllers) as
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
	client, err := root.Client("early-controllers-informers")
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
	if len(controllers) == 0 { // e.g. only node IPAM, with allocate-node-cidrs=false
		<-ctx.Done()
		return nil
	}
	if !app.RunControllers(ctx, cctx, controllers, 0, c.ControllerShutdownTimeout) {
		return errors.New("early controllers: shutdown timeout reached")
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
