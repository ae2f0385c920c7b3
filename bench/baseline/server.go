package baseline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/kedge-io/kedge/pkg/agent"
	"github.com/kedge-io/kedge/pkg/hostinfo"
	"github.com/kedge-io/kedge/pkg/killall"
	"github.com/kedge-io/kedge/pkg/manifests"
	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/server"
)

// Server is the baseline equivalent of `kedge server`: the control plane
// and a node, each upstream component its own process.
type Server struct {
	cfg ServerConfig

	mu        sync.Mutex
	started   bool
	run       *nodeRun
	manifests *manifests.Controller
}

// NewServer returns a Server; nothing runs until Start.
func NewServer(cfg ServerConfig) *Server { return &Server{cfg: cfg} }

// Name is "baseline".
func (*Server) Name() string { return "baseline" }

// Kubeconfig is the admin kubeconfig (cluster-admin), written by Start.
func (s *Server) Kubeconfig() string { return filepath.Join(s.serverDir(), "cred", "admin.kubeconfig") }

func (s *Server) serverDir() string { return filepath.Join(s.cfg.DataDir, "server") }

// prepare fills in the defaults and writes every certificate, kubeconfig and
// configuration file; it returns the processes in start order.
func (s *Server) prepare() (controlPlane, node, []spec, error) {
	cfg := s.cfg
	var cp controlPlane
	var n node
	if cfg.DataDir == "" {
		return cp, n, nil, errors.New("baseline: no DataDir")
	}
	opts, err := cfg.NodeOptions.withDefaults()
	if err != nil {
		return cp, n, nil, err
	}
	if cfg.ServiceCIDR == "" {
		cfg.ServiceCIDR = DefaultServiceCIDR
	}
	if cfg.HTTPSPort == 0 {
		cfg.HTTPSPort = DefaultHTTPSPort
	}
	_, serviceNet, err := net.ParseCIDR(cfg.ServiceCIDR)
	if err != nil {
		return cp, n, nil, fmt.Errorf("baseline: service CIDR: %w", err)
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return cp, n, nil, err
	}
	certs, err := pki.Generate(pki.Config{
		Dir:           filepath.Join(dir, "server", "tls"),
		ClusterDomain: opts.ClusterDomain,
		ServiceIP:     server.FirstServiceIP(serviceNet),
		SANs:          []string{opts.NodeName, opts.NodeIP.String()},
		NodeName:      opts.NodeName,
	})
	if err != nil {
		return cp, n, nil, err
	}
	local := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.HTTPSPort))
	cp = controlPlane{
		dir: filepath.Join(dir, "server"), nodeName: opts.NodeName, nodeIP: opts.NodeIP, port: cfg.HTTPSPort,
		serviceCIDR: cfg.ServiceCIDR, clusterCIDR: opts.ClusterCIDR, domain: opts.ClusterDomain,
		certs: certs, binDir: cfg.BinDir,
	}
	for name, o := range map[string]pki.KubeconfigOptions{
		"admin.kubeconfig":      {Server: local, CAFile: certs.ServerCA, CertFile: certs.AdminCert, KeyFile: certs.AdminKey, User: "admin"},
		"controller.kubeconfig": {Server: local, CAFile: certs.ServerCA, CertFile: certs.ControllerManagerCert, KeyFile: certs.ControllerManagerKey, User: "controller-manager"},
		"scheduler.kubeconfig":  {Server: local, CAFile: certs.ServerCA, CertFile: certs.SchedulerCert, KeyFile: certs.SchedulerKey, User: "scheduler"},
	} {
		if err := pki.WriteKubeconfig(cp.cred(name), 0o600, o); err != nil {
			return cp, n, nil, err
		}
	}
	cpSpecs, err := renderControlPlane(cp)
	if err != nil {
		return cp, n, nil, err
	}
	n, err = prepareNode(dir, opts, cfg.Paths, certs, local,
		map[string]string{"node-role.kubernetes.io/control-plane": "true"})
	if err != nil {
		return cp, n, nil, err
	}
	nodeSpecs, err := renderNode(n)
	if err != nil {
		return cp, n, nil, err
	}
	return cp, n, append(cpSpecs, nodeSpecs...), nil
}

// prepareNode issues the node's certificates from the CAs of ca and writes
// its kubeconfigs (kedge's agent.WriteKubeconfigs) for the apiserver at server.
func prepareNode(dataDir string, opts NodeOptions, paths Paths, ca pki.Bundle, server string, labels map[string]string) (node, error) {
	ac := agent.Config{DataDir: dataDir}
	nb, err := pki.IssueNode(ca, pki.NodeConfig{
		Dir:      filepath.Join(ac.Dir(), "tls"),
		NodeName: opts.NodeName,
		NodeIPs:  []net.IP{opts.NodeIP},
	})
	if err != nil {
		return node{}, err
	}
	ac.Certs = nb
	if err := agent.WriteKubeconfigs(&ac, server); err != nil {
		return node{}, err
	}
	return node{
		dir: ac.Dir(), opts: opts, paths: paths, host: hostinfo.Detect(), certs: nb,
		kubeletKubeconfig: ac.KubeletKubeconfig, proxyKubeconfig: ac.KubeProxyKubeconfig,
		corednsKubeconfig: ac.CoreDNSKubeconfig, labels: labels,
	}, nil
}

// Start writes the configuration, execs etcd, kube-apiserver and
// containerd, and returns; the other processes start as soon as what they
// need is there (see the package documentation). It does not wait for
// readiness.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("baseline: server already started")
	}
	if err := s.cfg.Paths.Check(); err != nil {
		return err
	}
	_, n, specs, err := s.prepare()
	if err != nil {
		return err
	}
	run, err := newNodeRun(s.cfg.DataDir, n)
	if err != nil {
		return err
	}
	s.started, s.run = true, run
	admin := s.Kubeconfig()
	apiReady := newGate()
	byName := map[string]spec{}
	for _, sp := range specs {
		byName[sp.name] = sp
	}
	afterAPI := func(ctx context.Context) error { return apiReady.wait(ctx) }
	// Exec'd at once, in this order: the rest waits for them.
	for _, name := range []string{"etcd", "kube-apiserver", "containerd"} {
		if err := run.sv.run(byName[name], nil); err != nil {
			return errors.Join(err, s.stopLocked(ctx))
		}
	}
	run.task("apiserver ready", func(ctx context.Context) error {
		if err := waitAPIServer(ctx, admin); err != nil {
			return err
		}
		run.log.Info("apiserver ready", "since_exec", time.Since(run.sv.firstExec()).Round(time.Millisecond))
		close(apiReady)
		return nil
	})
	for _, name := range []string{"kube-controller-manager", "kube-scheduler", "kube-proxy", "coredns"} {
		if err := run.sv.run(byName[name], afterAPI); err != nil {
			return errors.Join(err, s.stopLocked(ctx))
		}
	}
	if err := run.sv.run(byName["kubelet"], run.imported.wait); err != nil {
		return errors.Join(err, s.stopLocked(ctx))
	}
	if err := run.sv.run(byName["flanneld"], run.afterPodCIDR(afterAPI)); err != nil {
		return errors.Join(err, s.stopLocked(ctx))
	}
	s.manifests = manifests.New(manifests.Config{
		Kubeconfig: admin,
		Dir:        filepath.Join(s.serverDir(), "manifests"),
		Values:     manifests.Values{ClusterDNS: n.opts.ClusterDNS.String(), ClusterDomain: n.opts.ClusterDomain},
		Log:        run.log,
	})
	m := s.manifests
	run.task("manifests", func(ctx context.Context) error {
		if err := apiReady.wait(ctx); err != nil {
			return err
		}
		if err := m.Start(ctx); err != nil {
			return err
		}
		return m.Ready(ctx)
	})
	run.task("label node", func(ctx context.Context) error {
		if err := apiReady.wait(ctx); err != nil {
			return err
		}
		return labelNode(ctx, admin, n.opts.NodeName, n.labels)
	})
	run.nodeTasks()
	return nil
}

// ExecTime is when the first process (etcd) was exec'd; zero before Start.
func (s *Server) ExecTime() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil {
		return time.Time{}
	}
	return s.run.sv.firstExec()
}

// PIDs lists the running processes: the components and this node's
// containerd shims (not the containers under them).
func (s *Server) PIDs() ([]int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil {
		return nil, nil
	}
	return s.run.pids(), nil
}

// Processes returns the pid of each running component by name (etcd,
// kube-apiserver, …), without the shims.
func (s *Server) Processes() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil {
		return nil
	}
	return s.run.sv.running()
}

// Restarts returns how often each component exited and was started again.
func (s *Server) Restarts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil {
		return nil
	}
	return s.run.sv.restartCounts()
}

// Stop sends SIGTERM to every process, SIGKILL after StopTimeout, and
// cleans up the node as `kedge killall` does (pods, shims, mounts, cni0 and
// flannel.1, iptables rules). The data dir stays.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(ctx)
}

func (s *Server) stopLocked(ctx context.Context) error {
	if s.run == nil {
		return nil
	}
	var errs []error
	if s.manifests != nil {
		errs = append(errs, s.manifests.Stop(ctx))
	}
	errs = append(errs, s.run.stop(ctx))
	s.run = nil
	return errors.Join(errs...)
}

// nodeRun is a running node: its supervisor, its background tasks and
// what its cleanup needs.
type nodeRun struct {
	n        node
	sv       *supervisor
	log      *slog.Logger
	logFile  *os.File
	imported gate // the images are in containerd
	timeout  time.Duration
}

// newNodeRun creates the log directory (DataDir/logs) and the supervisor.
func newNodeRun(dataDir string, n node) (*nodeRun, error) {
	logDir := filepath.Join(dataDir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(logDir, "baseline.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	log := slog.New(slog.NewTextHandler(f, nil))
	return &nodeRun{n: n, sv: newSupervisor(logDir, log), log: log, logFile: f, imported: newGate(), timeout: n.opts.StopTimeout}, nil
}

// task runs f in the background until it returns or the node stops.
func (r *nodeRun) task(name string, f func(context.Context) error) {
	r.sv.wg.Add(1)
	go func() {
		defer r.sv.wg.Done()
		begin := time.Now()
		if err := f(r.sv.ctx); err != nil {
			if r.sv.ctx.Err() == nil {
				r.log.Error("task failed", "task", name, "err", err)
			}
			return
		}
		r.log.Info("task done", "task", name, "took", time.Since(begin).Round(time.Millisecond))
	}()
}

// nodeTasks starts what a node needs beside its processes: the image
// import (which lets the kubelet start), the CNI configuration from
// flanneld's lease and the node's kube-dns endpoint.
func (r *nodeRun) nodeTasks() {
	n := r.n
	r.task("import images", func(ctx context.Context) error {
		if err := importImages(ctx, n); err != nil {
			return err
		}
		close(r.imported)
		return nil
	})
	r.task("CNI config", func(ctx context.Context) error { return writeCNIConfig(ctx, n) })
	r.task("kube-dns endpoint", func(ctx context.Context) error { return publishDNS(ctx, n) })
}

// afterPodCIDR returns a start condition: first, then the node's pod CIDR.
func (r *nodeRun) afterPodCIDR(first func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		if first != nil {
			if err := first(ctx); err != nil {
				return err
			}
		}
		return waitPodCIDR(ctx, r.n.kubeletKubeconfig, r.n.opts.NodeName)
	}
}

// pids returns the running components and this node's shims.
func (r *nodeRun) pids() []int {
	var out []int
	for _, pid := range r.sv.running() {
		out = append(out, pid)
	}
	return append(out, shimPIDs(r.n.containerdAddress())...)
}

// stop stops the processes and cleans up.
func (r *nodeRun) stop(ctx context.Context) error {
	err := r.sv.stop(ctx, r.timeout)
	if err != nil {
		r.log.Warn("stop", "err", err)
		err = nil // the processes were killed: not a failure of Stop
	}
	c := r.n.cleanupConfig()
	c.Log = r.log
	err = killall.Run(ctx, c)
	if err != nil {
		r.log.Error("cleanup", "err", err)
	}
	r.log.Info("stopped", "restarts", r.sv.restartCounts())
	r.logFile.Close()
	return err
}
