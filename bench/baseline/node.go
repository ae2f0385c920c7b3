package baseline

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"time"

	"github.com/kedge-io/kedge/pkg/pki"
)

// Node is the baseline equivalent of `kedge agent`: containerd, kubelet,
// flanneld, kube-proxy and CoreDNS (kedge's agent runs CoreDNS per node
// too), each its own process, joining the control plane at
// NodeConfig.ServerURL with certificates it issues from the server's CAs.
type Node struct {
	cfg NodeConfig

	mu      sync.Mutex
	started bool
	run     *nodeRun
}

// NewNode returns a Node; nothing runs until Start.
func NewNode(cfg NodeConfig) *Node { return &Node{cfg: cfg} }

// Name is "baseline".
func (*Node) Name() string { return "baseline" }

// Kubeconfig is NodeConfig.AdminKubeconfig.
func (n *Node) Kubeconfig() string { return n.cfg.AdminKubeconfig }

// prepare issues the node's certificates and writes its configuration.
func (n *Node) prepare() (node, []spec, error) {
	cfg := n.cfg
	if cfg.DataDir == "" || cfg.ServerURL == "" || cfg.ServerTLSDir == "" {
		return node{}, nil, errors.New("baseline: NodeConfig needs DataDir, ServerURL and ServerTLSDir")
	}
	opts, err := cfg.NodeOptions.withDefaults()
	if err != nil {
		return node{}, nil, err
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return node{}, nil, err
	}
	nd, err := prepareNode(dir, opts, cfg.Paths, pki.Layout(cfg.ServerTLSDir), cfg.ServerURL, nil)
	if err != nil {
		return node{}, nil, err
	}
	specs, err := renderNode(nd)
	return nd, specs, err
}

// Start writes the configuration, execs containerd, kube-proxy and
// CoreDNS, and returns; the kubelet starts once containerd serves and the
// images are imported, flanneld once the Node has its pod CIDR. It does not wait for readiness.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started {
		return errors.New("baseline: node already started")
	}
	if err := n.cfg.Paths.Check(); err != nil {
		return err
	}
	nd, specs, err := n.prepare()
	if err != nil {
		return err
	}
	run, err := newNodeRun(n.cfg.DataDir, nd)
	if err != nil {
		return err
	}
	n.started, n.run = true, run
	for _, sp := range specs {
		var after func(context.Context) error
		switch sp.name {
		case "kubelet":
			after = run.imported.wait
		case "flanneld":
			after = run.afterPodCIDR(nil)
		}
		if err := run.sv.run(sp, after); err != nil {
			return errors.Join(err, n.stopLocked(ctx))
		}
	}
	run.nodeTasks()
	return nil
}

// ExecTime is when the first process (containerd) was exec'd; zero before Start.
func (n *Node) ExecTime() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.run == nil {
		return time.Time{}
	}
	return n.run.sv.firstExec()
}

// PIDs lists the node's running processes and its containerd shims.
func (n *Node) PIDs() ([]int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.run == nil {
		return nil, nil
	}
	return n.run.pids(), nil
}

// Processes returns the pid of each running component by name, without the shims.
func (n *Node) Processes() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.run == nil {
		return nil
	}
	return n.run.sv.running()
}

// Restarts returns how often each component exited and was started again.
func (n *Node) Restarts() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.run == nil {
		return nil
	}
	return n.run.sv.restartCounts()
}

// Stop stops the node's processes (SIGTERM, SIGKILL after StopTimeout) and
// cleans up as `kedge killall` does, without touching the control plane.
func (n *Node) Stop(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stopLocked(ctx)
}

func (n *Node) stopLocked(ctx context.Context) error {
	if n.run == nil {
		return nil
	}
	err := n.run.stop(ctx)
	n.run = nil
	return err
}
