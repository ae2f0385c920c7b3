// Package kubeproxy runs kube-proxy (iptables mode by default) in the kedge
// process, from the upstream k8s.io/kubernetes/cmd/kube-proxy/app library.
//
//	p := kubeproxy.New(kubeproxy.Config{NodeName: "n1", Kubeconfig: path, ClusterCIDR: "10.42.0.0/16"})
//	_ = p.Start(ctx)
//	_ = p.Ready(ctx) // the healthz server answers
package kubeproxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/kubernetes/cmd/kube-proxy/app"

	"github.com/kedge-io/kedge/pkg/args"
	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/logging"
)

// HealthzAddress is where kube-proxy's health server listens.
const HealthzAddress = "127.0.0.1:10256"

// Config describes kube-proxy on one node.
type Config struct {
	NodeName    string
	NodeIP      net.IP
	Kubeconfig  string   // kube-proxy's client kubeconfig (CN=system:kube-proxy)
	ClusterCIDR string   // pod CIDR, to tell local from remote traffic
	ExtraArgs   []string // --kube-proxy-arg key=value
	Log         *slog.Logger
}

// KubeProxy is the kube-proxy component.
type KubeProxy struct {
	cfg    Config
	cancel context.CancelFunc
	errc   chan error
}

var _ component.Component = (*KubeProxy)(nil)
var _ component.Failer = (*KubeProxy)(nil)

// New returns a kube-proxy component; nothing runs until Start.
func New(cfg Config) *KubeProxy { return &KubeProxy{cfg: cfg, errc: make(chan error, 1)} }

// Name implements component.Component.
func (*KubeProxy) Name() string { return "kube-proxy" }

// Args renders kube-proxy's flags: kedge's defaults, then the user's
// --kube-proxy-arg values.
func Args(cfg Config) ([]string, error) {
	defaults := map[string]string{
		"bind-address":         cfg.NodeIP.String(),
		"cluster-cidr":         cfg.ClusterCIDR,
		"healthz-bind-address": HealthzAddress,
		"hostname-override":    cfg.NodeName,
		"kubeconfig":           cfg.Kubeconfig,
		"metrics-bind-address": "127.0.0.1:10249",
		"proxy-mode":           "iptables",
	}
	if keep := keepConntrackMax(readConntrackMax, runtime.NumCPU()); keep {
		defaults["conntrack-max-per-core"] = "0"
	}
	return args.Render(defaults, cfg.ExtraArgs, "--kube-proxy-arg")
}

// Upstream kube-proxy's conntrack table size: conntrack-max-per-core times
// the CPUs, at least conntrack-min.
const (
	conntrackMaxPerCore = 32768
	conntrackMin        = 131072
	conntrackMaxFile    = "/proc/sys/net/netfilter/nf_conntrack_max"
)

// keepConntrackMax reports whether kube-proxy must leave nf_conntrack_max
// as it is (conntrack-max-per-core=0): when the host's table is already at
// least the size kube-proxy would set. Upstream writes its size whenever
// it differs, so it would shrink a larger table, and the write fails
// outside the host's initial network namespace (a node in a container),
// where the sysctl is read-only: kube-proxy then does not start.
func keepConntrackMax(current func() (int, error), cpus int) bool {
	v, err := current()
	return err == nil && v >= max(conntrackMaxPerCore*cpus, conntrackMin)
}

// readConntrackMax reads the host's nf_conntrack_max.
func readConntrackMax() (int, error) {
	raw, err := os.ReadFile(conntrackMaxFile)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(raw)))
}

// Start validates the configuration and runs kube-proxy in the background.
func (p *KubeProxy) Start(ctx context.Context) error {
	flags, err := Args(p.cfg)
	if err != nil {
		return err
	}
	opts := app.NewOptions()
	fs := pflag.NewFlagSet("kube-proxy", pflag.ContinueOnError)
	opts.AddFlags(fs)
	if err := fs.Parse(flags); err != nil {
		return fmt.Errorf("--kube-proxy-arg: %w", err)
	}
	if err := opts.Complete(fs); err != nil {
		return fmt.Errorf("--kube-proxy-arg: %w", err)
	}
	if err := opts.Validate(); err != nil {
		return fmt.Errorf("--kube-proxy-arg: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	runCtx, _ = logging.WithComponent(runCtx, p.cfg.Log, "kube-proxy")
	p.cancel = cancel
	go func() {
		if err := opts.Run(runCtx); err != nil && runCtx.Err() == nil {
			p.errc <- err
		}
	}()
	return nil
}

// Ready waits until the health server answers (any status: it reports 503
// until the first rules sync, which needs the node's Service state).
func (p *KubeProxy) Ready(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+HealthzAddress+"/healthz", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", HealthzAddress, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Err reports kube-proxy failing.
func (p *KubeProxy) Err() <-chan error { return p.errc }

// Stop cancels kube-proxy's context. Upstream kube-proxy does not return on
// cancel (its informers and sync loop run until the process exits), so Stop
// does not wait: the rules it wrote stay in place, as they do when a
// standalone kube-proxy is stopped, and `kedge killall` removes them.
func (p *KubeProxy) Stop(context.Context) error {
	if p.cancel != nil {
		p.cancel()
	}
	return nil
}
