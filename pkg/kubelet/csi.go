package kubelet

import (
	"log/slog"
	"sync"
	"time"

	"k8s.io/kubernetes/pkg/volume"
)

// The CSI volume plugin (k8s.io/kubernetes/pkg/volume/csi) keeps its node
// information manager in a package variable that every Init of a CSI
// plugin replaces. The kubelet and the controller-manager (attach-detach,
// persistent-volume and expand controllers) each init one; the
// controller-manager's has no node name. In one process, whichever inits
// last wins: when the controller-manager's controllers start after the
// kubelet (a server that takes the leader lease later, or is slow to get
// it at boot), the kubelet cannot initialize its CSINode ("resource name may
// not be empty"; upstream ends the process after 140 s of retries) and CSI
// drivers can no longer register on that node. k3s and MicroShift patch
// upstream for it; kedge keeps upstream as it is and inits the kubelet's
// plugin again after the controller-manager's (CSIGuard).

// csiPluginName is the CSI plugin's name (csi.CSIPluginName).
const csiPluginName = "kubernetes.io/csi"

// csiPlugin is every interface upstream's CSI plugin implements, and none
// other: the volume plugin manager looks its abilities up by type
// assertion, so a wrapper must claim exactly these (TestCSIWrapperInterfaces
// checks it against upstream's plugin).
type csiPlugin interface {
	volume.AttachableVolumePlugin
	volume.NodeExpandableVolumePlugin
	volume.BlockVolumePlugin
}

// CSIGuard re-inits the kubelet's CSI plugin after the controller-manager
// has inited its own, so that the kubelet's node information wins.
type CSIGuard struct {
	mu     sync.Mutex
	plugin *guardedCSI // nil until the kubelet's plugins are wrapped
	log    *slog.Logger
	delays []time.Duration
}

// NewCSIGuard returns a guard for one process's kubelet.
func NewCSIGuard(log *slog.Logger) *CSIGuard {
	// The controller-manager inits its volume plugins as it starts its
	// controllers, within seconds of taking the lease.
	return &CSIGuard{log: log, delays: []time.Duration{3 * time.Second, 10 * time.Second, 30 * time.Second, 90 * time.Second}}
}

// wrap replaces the CSI plugin in the kubelet's plugin list by one whose
// Init the guard can repeat. Nil guard: nothing.
func (g *CSIGuard) wrap(plugins []volume.VolumePlugin) {
	if g == nil {
		return
	}
	for i, p := range plugins {
		if p.GetPluginName() != csiPluginName {
			continue
		}
		inner, ok := p.(csiPlugin)
		if !ok {
			g.log.Warn("the CSI volume plugin has other interfaces than kedge knows: not guarded", "component", "kubelet")
			return
		}
		w := &guardedCSI{csiPlugin: inner}
		plugins[i] = w
		g.mu.Lock()
		g.plugin = w
		g.mu.Unlock()
		return
	}
}

// ControllersStarting is called when the controller-manager starts its
// controllers (it took the lease): the kubelet's CSI plugin is inited
// again a few times while the controllers' plugins are inited.
func (g *CSIGuard) ControllersStarting() {
	if g == nil {
		return
	}
	go func() {
		for _, d := range g.delays {
			time.Sleep(d)
			g.reinit()
		}
	}()
}

func (g *CSIGuard) reinit() {
	g.mu.Lock()
	p := g.plugin
	g.mu.Unlock()
	if p == nil {
		return
	}
	if err := p.reinit(); err != nil {
		g.log.Warn("re-initializing the kubelet's CSI plugin", "component", "kubelet", "err", err)
	}
}

// guardedCSI is the kubelet's CSI plugin with its Init's host kept.
type guardedCSI struct {
	csiPlugin
	mu   sync.Mutex
	host volume.VolumeHost
}

// Init implements volume.VolumePlugin.
func (p *guardedCSI) Init(host volume.VolumeHost) error {
	p.mu.Lock()
	p.host = host
	p.mu.Unlock()
	return p.csiPlugin.Init(host)
}

// reinit inits the plugin again with the kubelet's host (nothing before
// the kubelet inited it).
func (p *guardedCSI) reinit() error {
	p.mu.Lock()
	host := p.host
	p.mu.Unlock()
	if host == nil {
		return nil
	}
	return p.csiPlugin.Init(host)
}
