// Package apiserver runs kube-apiserver in the kedge process, from the
// upstream k8s.io/kubernetes/cmd/kube-apiserver/app library.
//
//	a := apiserver.New(apiserver.Config{Port: 6443, Certs: bundle, ...})
//	_ = a.Start(ctx) // returns once options are validated; serving happens in the background
//	_ = a.Ready(ctx) // /readyz answers ok
package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"

	"github.com/kedge-io/kedge/pkg/args"
	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/logging"
	"github.com/kedge-io/kedge/pkg/pki"
)

// Config describes the apiserver of one server node.
type Config struct {
	BindAddress   string // address to listen on, e.g. 0.0.0.0
	Port          int    // --https-listen-port
	AdvertiseIP   net.IP // address published in the kubernetes Endpoints
	ServiceCIDR   string
	ClusterDomain string
	EtcdServers   []string // client URLs of etcd
	CertDir       string   // where upstream may write generated files
	Certs         pki.Bundle
	ExtraArgs     []string // --kube-apiserver-arg key=value
	// EncryptionConfig is the encryption config file for Secrets
	// (reloaded when it changes); "": Secrets are stored in clear.
	EncryptionConfig string
	// Wrap, if set, wraps the apiserver's whole handler (authentication
	// included) on its port: the supervisor serves its own paths there and
	// hands every other request to the apiserver. loopbackToken is the
	// bearer token of the apiserver's own loopback client (its post-start
	// hooks and admission plugins), which only this process knows.
	Wrap func(next http.Handler, loopbackToken string) http.Handler
	Log  *slog.Logger
}

// APIServer is the kube-apiserver component.
type APIServer struct {
	component.Background
	cfg Config
}

var _ component.Component = (*APIServer)(nil)
var _ component.Failer = (*APIServer)(nil)

// New returns an apiserver component; nothing runs until Start.
func New(cfg Config) *APIServer { return &APIServer{cfg: cfg} }

// Name implements component.Component.
func (*APIServer) Name() string { return "apiserver" }

// Args renders the kube-apiserver flags for cfg: kedge's defaults, then the
// user's --kube-apiserver-arg values.
func Args(cfg Config) ([]string, error) {
	c := cfg.Certs
	issuer := "https://kubernetes.default.svc." + cfg.ClusterDomain
	defaults := map[string]string{
		"advertise-address":                  cfg.AdvertiseIP.String(),
		"allow-privileged":                   "true",
		"anonymous-auth":                     "false",
		"api-audiences":                      issuer + ",kedge",
		"authorization-mode":                 "Node,RBAC",
		"bind-address":                       cfg.BindAddress,
		"cert-dir":                           cfg.CertDir,
		"client-ca-file":                     c.ClientCA,
		"enable-admission-plugins":           "NodeRestriction",
		"etcd-cafile":                        c.EtcdServerCA,
		"etcd-certfile":                      c.EtcdClientCert,
		"etcd-keyfile":                       c.EtcdClientKey,
		"etcd-servers":                       strings.Join(cfg.EtcdServers, ","),
		"kubelet-certificate-authority":      c.ServerCA,
		"kubelet-client-certificate":         c.APIServerKubeletClientCert,
		"kubelet-client-key":                 c.APIServerKubeletClientKey,
		"kubelet-preferred-address-types":    "InternalIP,ExternalIP,Hostname",
		"profiling":                          "false",
		"proxy-client-cert-file":             c.ProxyClientCert,
		"proxy-client-key-file":              c.ProxyClientKey,
		"requestheader-allowed-names":        "system:auth-proxy",
		"requestheader-client-ca-file":       c.RequestHeaderCA,
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-username-headers":     "X-Remote-User",
		"secure-port":                        strconv.Itoa(cfg.Port),
		"service-account-issuer":             issuer,
		"service-account-key-file":           c.ServiceAccountPub,
		"service-account-signing-key-file":   c.ServiceAccountKey,
		"service-cluster-ip-range":           cfg.ServiceCIDR,
		"service-node-port-range":            "30000-32767",
		// On shutdown, end open watches (the in-process node components
		// never close theirs) so that the apiserver and etcd stop quickly.
		"shutdown-watch-termination-grace-period": "2s",
		"storage-backend":                         "etcd3",
		"tls-cert-file":                           c.APIServerCert,
		"tls-private-key-file":                    c.APIServerKey,
	}
	// The aggregator dials an APIService's endpoints (metrics-server on
	// every server) directly, not its ClusterIP: a server without kube-proxy
	// (--disable-agent) reaches them too.
	defaults["enable-aggregator-routing"] = "true"
	if cfg.EncryptionConfig != "" {
		defaults["encryption-provider-config"] = cfg.EncryptionConfig
		defaults["encryption-provider-config-automatic-reload"] = "true"
	}
	return args.Render(defaults, cfg.ExtraArgs, "--kube-apiserver-arg")
}

// Start parses and validates the apiserver options and starts serving in the
// background. Invalid --kube-apiserver-arg values fail here.
func (a *APIServer) Start(ctx context.Context) error {
	flags, err := Args(a.cfg)
	if err != nil {
		return err
	}
	s := options.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(flags); err != nil {
		return fmt.Errorf("--kube-apiserver-arg: %w", err)
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("feature gates: %w", err)
	}
	ctx, _ = logging.WithComponent(a.Context(ctx), a.cfg.Log, "apiserver")
	completed, err := s.Complete(ctx)
	if err != nil {
		return errors.Join(fmt.Errorf("complete options: %w", err), a.Stop(ctx))
	}
	if errs := completed.Validate(); len(errs) > 0 {
		return errors.Join(fmt.Errorf("--kube-apiserver-arg: %w", utilerrors.NewAggregate(errs)), a.Stop(ctx))
	}
	a.Go(func(context.Context) error { return run(ctx, completed, a.cfg.Wrap) })
	return nil
}

// run is upstream app.Run with one addition: the handler of the outermost
// server (the aggregator) is wrapped with wrap before it starts serving.
// Like app.Run (since 1.37) it names the shared informers "kube-apiserver"
// for client-go's informer metrics; the name is reserved process-wide, so
// run releases it when the apiserver stops.
func run(ctx context.Context, opts options.CompletedOptions, wrap func(http.Handler, string) http.Handler) error {
	if opts.InformerName == nil {
		name, err := cache.NewInformerName("kube-apiserver")
		if err != nil {
			return err
		}
		defer name.Release()
		opts.InformerName = name
	}
	config, err := app.NewConfig(opts)
	if err != nil {
		return err
	}
	completed, err := config.Complete()
	if err != nil {
		return err
	}
	server, err := app.CreateServerChain(completed)
	if err != nil {
		return err
	}
	if wrap != nil {
		h := server.GenericAPIServer.Handler
		h.FullHandlerChain = wrap(h.FullHandlerChain, config.KubeAPIs.ControlPlane.Generic.LoopbackClientConfig.BearerToken)
	}
	prepared, err := server.PrepareRun()
	if err != nil {
		return err
	}
	return prepared.Run(ctx)
}

// Ready polls /readyz with the admin credentials until the apiserver reports ready.
func (a *APIServer) Ready(ctx context.Context) error {
	client, err := rest.HTTPClientFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{
		CAFile:   a.cfg.Certs.ServerCA,
		CertFile: a.cfg.Certs.AdminCert,
		KeyFile:  a.cfg.Certs.AdminKey,
	}, Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	url := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.Port)) + "/readyz"
	// Every 50 ms: the admin kubeconfig, and with it every client, waits for
	// this; a poll on the kept-alive connection costs little.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", url, ctx.Err())
		case <-tick.C:
		}
	}
}

// drainTimeout bounds how long Stop waits for the apiserver to finish.
// Its graceful shutdown waits up to --request-timeout (60 s) for open
// connections; the in-process node components (kubelet, kube-proxy,
// CoreDNS) keep their watches open until the process exits, so the wait
// would always run to its end.
const drainTimeout = 3 * time.Second

// Stop closes the apiserver's listener and waits for it to shut down, at
// most drainTimeout: requests still open after that end with the process.
func (a *APIServer) Stop(ctx context.Context) error {
	bounded, cancel := context.WithTimeout(ctx, drainTimeout)
	defer cancel()
	err := a.Background.Stop(bounded)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		a.cfg.Log.Info("apiserver stopped listening; long-running requests still open end with the process", "component", "apiserver")
		return nil
	}
	return err
}
