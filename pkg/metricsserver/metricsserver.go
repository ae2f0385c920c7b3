package metricsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/metrics-server/cmd/metrics-server/app/options"
	msserver "sigs.k8s.io/metrics-server/pkg/server"

	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/logging"
)

// Port is where metrics-server listens on every server; the aggregator
// dials it at each server's advertise address.
const Port = 10262

// Resolution is how often metrics-server scrapes the kubelets, as in
// upstream's manifests (--metric-resolution=15s; it accepts 10 s at least).
// A pod's CPU shows after two scrapes.
const Resolution = 15 * time.Second

// User is the identity of metrics-server's client certificate, bound to the
// RBAC of manifests/metrics-server.yaml.
const User = "system:kedge-metrics-server"

// Config describes the metrics-server of one server.
type Config struct {
	// Kubeconfig is metrics-server's own (User): its client certificate
	// reads Nodes and Pods, reviews the aggregator's requests and scrapes
	// the kubelets.
	Kubeconfig string
	// AdminKubeconfig writes the EndpointSlice of the metrics-server
	// Service.
	AdminKubeconfig string
	// BindAddress is the address to listen on (the apiserver's
	// --bind-address); Port is the port.
	BindAddress net.IP
	// ServingCert and ServingKey are the serving certificate (for
	// pki.MetricsServerDNSName) and its key; metrics-server reloads them
	// when they change.
	ServingCert, ServingKey string
	// ServerCA is the cluster's server CA: it verifies the kubelets'
	// serving certificates, and the aggregator verifies metrics-server's
	// with it (the APIService's caBundle).
	ServerCA string
	// RequestHeaderCA is the front-proxy CA, which signs the aggregator's
	// client certificate (metrics-server reads it from the
	// extension-apiserver-authentication ConfigMap, as upstream).
	RequestHeaderCA string
	// Resolution is the scrape interval; 0 means the constant Resolution.
	Resolution time.Duration
	Log        *slog.Logger
}

// Server is the metrics-server component.
type Server struct {
	cfg Config
	component.Background
}

var _ component.Component = (*Server)(nil)

// New returns the component; nothing runs until Start.
func New(cfg Config) *Server {
	if cfg.Resolution == 0 {
		cfg.Resolution = Resolution
	}
	return &Server{cfg: cfg}
}

// Name implements component.Component.
func (*Server) Name() string { return "metrics-server" }

// Start builds metrics-server (binding Port, so that a port in use fails
// here) and runs it in the background, with the mirror of its Service's
// EndpointSlice and the registration of its APIService.
func (s *Server) Start(ctx context.Context) error {
	o, err := s.options()
	if err != nil {
		return err
	}
	cfg, err := serverConfig(ctx, o)
	if err != nil {
		return err
	}
	started := false
	defer func() {
		if !started { // the port is bound: free it for the next attempt
			_ = o.SecureServing.Listener.Close()
		}
	}()
	// Upstream leaves the generic server's profiling on (/debug/pprof,
	// behind authorization); kedge's apiserver runs with --profiling=false.
	cfg.Apiserver.EnableProfiling = false
	ms, err := cfg.Complete()
	if err != nil {
		return err
	}
	admin, err := clientcmd.BuildConfigFromFlags("", s.cfg.AdminKubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", s.cfg.AdminKubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return err
	}
	ctx, log := logging.WithComponent(s.Context(ctx), s.cfg.Log, s.Name())
	started = true
	s.Go(func(context.Context) error {
		// Beside metrics-server: the Service's EndpointSlice, and the
		// APIService once metrics-server serves. Both end with it.
		sideCtx, stopSide := context.WithCancel(ctx)
		var side sync.WaitGroup
		side.Go(func() { mirrorEndpoints(sideCtx, client, log) })
		side.Go(func() {
			register(sideCtx, admin, client, localAddr(s.cfg.BindAddress), s.cfg.ServerCA, s.cfg.RequestHeaderCA, log)
		})
		defer func() { stopSide(); side.Wait() }()
		err := ms.RunUntil(ctx.Done())
		if err == nil && ctx.Err() == nil {
			err = errors.New("metrics-server stopped")
		}
		return err
	})
	log.Info("serving the Metrics API", "address", s.addr(), "resolution", s.cfg.Resolution)
	return nil
}

// serverConfig is upstream's ServerConfig, which binds the port and reads
// the extension-apiserver-authentication ConfigMap. On a new cluster the
// apiserver may not yet authorize that read (its RBAC cache lags the
// RoleBinding the manifests just applied): it is retried for
// configAttempts seconds. The listener stays in o across attempts.
func serverConfig(ctx context.Context, o *options.Options) (*msserver.Config, error) {
	for attempt := 1; ; attempt++ {
		cfg, err := o.ServerConfig()
		if err == nil {
			return cfg, nil
		}
		if o.SecureServing.Listener == nil {
			return nil, fmt.Errorf("listen on %s (metricsserver.Port): %w", net.JoinHostPort(o.SecureServing.BindAddress.String(), strconv.Itoa(Port)), err)
		}
		if attempt == configAttempts {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// configAttempts bounds serverConfig's retries, one a second.
const configAttempts = 30

// Ready returns at once: the Metrics API answers after the first scrapes
// (two, for CPU), which need nothing from the rest of the start.
func (*Server) Ready(context.Context) error { return nil }

// addr is the listen address.
func (s *Server) addr() string {
	return net.JoinHostPort(s.cfg.BindAddress.String(), strconv.Itoa(Port))
}

// options are metrics-server's command-line options as kedge sets them:
// upstream's defaults, the files of Config, the kubelets by InternalIP at
// the port in their Node status.
func (s *Server) options() (*options.Options, error) {
	if s.cfg.Resolution < 10*time.Second {
		return nil, fmt.Errorf("metrics-server resolution %s: it must be 10s or more", s.cfg.Resolution)
	}
	if s.cfg.ServingCert == "" || s.cfg.ServingKey == "" {
		// Upstream would write a self-signed pair into the working directory.
		return nil, errors.New("Config.ServingCert and ServingKey are required")
	}
	o := options.NewOptions()
	o.MetricResolution = s.cfg.Resolution
	o.Kubeconfig = s.cfg.Kubeconfig
	o.SecureServing.BindAddress = s.cfg.BindAddress
	o.SecureServing.BindPort = Port
	o.SecureServing.ServerCert.CertKey.CertFile = s.cfg.ServingCert
	o.SecureServing.ServerCert.CertKey.KeyFile = s.cfg.ServingKey
	o.Authentication.RemoteKubeConfigFile = s.cfg.Kubeconfig
	o.Authorization.RemoteKubeConfigFile = s.cfg.Kubeconfig
	k := o.KubeletClient
	k.KubeletCAFile = s.cfg.ServerCA
	k.KubeletUseNodeStatusPort = true
	k.KubeletPreferredAddressTypes = []string{"InternalIP", "ExternalIP", "Hostname"}
	if errs := k.Validate(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if o.MetricResolution*9/10 < k.KubeletRequestTimeout {
		return nil, fmt.Errorf("metrics-server resolution %s: shorter than the kubelet request timeout %s", o.MetricResolution, k.KubeletRequestTimeout)
	}
	return o, nil
}
