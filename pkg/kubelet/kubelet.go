package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	cadvisorcontainerd "github.com/google/cadvisor/lib/container/containerd"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/kubernetes/cmd/kubelet/app"
	"k8s.io/kubernetes/cmd/kubelet/app/options"

	"github.com/kedge-io/kedge/pkg/args"
	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/logging"
)

// stopTimeout bounds Stop when the caller's context does not.
const stopTimeout = 10 * time.Second

// Kubelet is the kubelet component. One process runs at most one: the
// kubelet keeps process-wide state (cadvisor, feature gates, metrics, the
// ports 10248 and 10250) that a second instance would collide with, even
// after the first one stopped.
type Kubelet struct {
	component.Background
	cfg     Config
	healthz string // URL of the healthz endpoint; empty when disabled
}

var _ component.Component = (*Kubelet)(nil)
var _ component.Failer = (*Kubelet)(nil)

// New returns a kubelet component; nothing runs until Start.
func New(cfg Config) *Kubelet {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Kubelet{cfg: cfg}
}

// Name implements component.Component.
func (*Kubelet) Name() string { return "kubelet" }

// Start renders the configuration (invalid --kubelet-arg values fail here),
// checks what would otherwise make the kubelet exit the process (its ports
// are taken) or fail late (no runtime socket), and runs the kubelet in the
// background.
//
// Start does what the upstream command does beyond app.Run, except two
// things kedge does once for the process: the logging configuration, and the
// feature gates. The kubelet reads the process-wide gate, shared with
// kube-proxy and, on servers, the control plane; kedge's --feature-gates
// sets it before any component starts, and Render refuses feature gates
// that disagree with it. Start sets the cadvisor globals (containerd
// endpoint, housekeeping interval …).
func (k *Kubelet) Start(ctx context.Context) error {
	s, err := Render(k.cfg)
	if err != nil {
		return err
	}
	if err := preflight(s); err != nil {
		return err
	}

	// cadvisor reads containers' details from containerd at its own flag,
	// which the kubelet does not derive from its runtime endpoint.
	if sock, ok := strings.CutPrefix(s.ContainerRuntimeEndpoint, "unix://"); ok {
		*cadvisorcontainerd.ArgContainerdEndpoint = sock
	}
	flags, _ := args.Render(nil, k.cfg.ExtraArgs, argFlag) // Render checked them
	if err := applyGlobalFlags(flags); err != nil {
		return fmt.Errorf("%s: %w", argFlag, err)
	}

	ctx, log := logging.WithComponent(k.Context(ctx), k.cfg.Log, "kubelet")
	if k.cfg.Host.CgroupV1 && !s.FailCgroupV1 {
		log.Warn("cgroup v1 host: the kubelet runs with failCgroupV1=false; upstream supports cgroup v1 in maintenance mode only, move to cgroup v2")
	}
	if l := s.Logging; l.Verbosity != 0 || len(l.VModule) > 0 || (l.Format != "" && l.Format != "text") {
		log.Warn("--kubelet-arg logging settings have no effect: kedge configures logging once for the process (use --debug)")
	}
	deps, err := app.UnsecuredDependencies(ctx, s, utilfeature.DefaultFeatureGate)
	if err != nil {
		return errors.Join(fmt.Errorf("kubelet: dependencies: %w", err), k.Background.Stop(ctx))
	}
	k.cfg.CSIGuard.wrap(deps.VolumePlugins)
	if s.HealthzPort > 0 {
		k.healthz = "http://" + net.JoinHostPort(dialHost(s.HealthzBindAddress), strconv.Itoa(int(s.HealthzPort))) + "/healthz"
	}
	k.Go(func(context.Context) error {
		// Run returns when ctx ends, or early with an error. It never
		// returns for a kubelet that runs, so Err reports any return.
		return app.Run(ctx, s, deps, utilfeature.DefaultFeatureGate)
	})
	return nil
}

// Ready polls the kubelet's healthz endpoint (127.0.0.1:10248/healthz) until
// it answers ok. The endpoint serves once the kubelet has connected to the
// container runtime, set up its cgroups and started; the Node may not be
// registered yet. With healthz-port=0 Ready returns at once.
func (k *Kubelet) Ready(ctx context.Context) error {
	if k.healthz == "" {
		return nil
	}
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, k.healthz, nil)
		if resp, err := client.Do(req); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", k.healthz, ctx.Err())
		case <-tick.C:
		}
	}
}

// Stop cancels the kubelet's context and waits, at most 10 s (or until ctx
// ends), for app.Run to return; Run returns at once when it has finished
// starting.
//
// The kubelet does not fully stop: much of it runs on goroutines that ignore
// its context and end only with the process. Upstream starts them with
// wait.NeverStop or context.Background(): the informers and the pod source
// from the apiserver, the node status loop and the node lease renewal (the
// Node stays Ready until the process exits), container and image garbage
// collection, the QoS cgroup and iptables loops, cadvisor, the plugin
// watcher, the HTTPS server on 10250, the healthz server on 10248 and the
// pod-resources socket. The pod sync loop and the pods API socket do stop.
// This is acceptable only because kedge exits right after: a stopped kubelet
// cannot be started again in the same process.
func (k *Kubelet) Stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	return k.Background.Stop(ctx)
}

// preflight checks, before the kubelet runs, what would otherwise make it
// exit the process (a port taken: ListenAndServe calls os.Exit) or report
// another process's health (the healthz port), and creates the root
// directory.
func preflight(s *options.KubeletServer) error {
	if sock, ok := strings.CutPrefix(s.ContainerRuntimeEndpoint, "unix://"); ok {
		st, err := os.Stat(sock)
		if err != nil {
			return fmt.Errorf("kubelet: container runtime endpoint %s: %w", s.ContainerRuntimeEndpoint, err)
		}
		if st.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("kubelet: container runtime endpoint %s: not a unix socket", s.ContainerRuntimeEndpoint)
		}
	}
	if err := os.MkdirAll(s.RootDirectory, 0o750); err != nil {
		return fmt.Errorf("kubelet: root directory: %w", err)
	}
	var ports []string
	if s.EnableServer {
		ports = append(ports, net.JoinHostPort(s.Address, strconv.Itoa(int(s.Port))))
	}
	if s.HealthzPort > 0 {
		ports = append(ports, net.JoinHostPort(s.HealthzBindAddress, strconv.Itoa(int(s.HealthzPort))))
	}
	for _, addr := range ports {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("kubelet: %s is not free (is another kubelet running?): %w", addr, err)
		}
		l.Close()
	}
	return nil
}

// dialHost returns the address to reach a server bound to host: loopback
// for a wildcard bind.
func dialHost(host string) string {
	ip := net.ParseIP(host)
	switch {
	case host == "" || (ip != nil && ip.IsUnspecified() && ip.To4() != nil):
		return "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		return "::1"
	}
	return host
}
