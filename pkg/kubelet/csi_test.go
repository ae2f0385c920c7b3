package kubelet

import (
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"k8s.io/kubernetes/pkg/volume"
	"k8s.io/kubernetes/pkg/volume/csi"
)

// TestCSIWrapperInterfaces: the guarded plugin claims exactly the
// interfaces upstream's CSI plugin implements (the volume plugin manager
// finds abilities by type assertion): an upstream change fails here.
func TestCSIWrapperInterfaces(t *testing.T) {
	inner := csi.ProbeVolumePlugins()[0]
	if inner.GetPluginName() != csiPluginName {
		t.Fatalf("upstream's CSI plugin is %q", inner.GetPluginName())
	}
	g := NewCSIGuard(slog.New(slog.NewTextHandler(io.Discard, nil)))
	plugins := []volume.VolumePlugin{inner}
	g.wrap(plugins)
	if _, ok := plugins[0].(*guardedCSI); !ok {
		t.Fatalf("the CSI plugin was not wrapped: %T", plugins[0])
	}
	for _, iface := range []any{
		(*volume.VolumePlugin)(nil), (*volume.PersistentVolumePlugin)(nil), (*volume.RecyclableVolumePlugin)(nil),
		(*volume.DeletableVolumePlugin)(nil), (*volume.ProvisionableVolumePlugin)(nil), (*volume.AttachableVolumePlugin)(nil),
		(*volume.DeviceMountableVolumePlugin)(nil), (*volume.ExpandableVolumePlugin)(nil), (*volume.NodeExpandableVolumePlugin)(nil),
		(*volume.ResizableEphemeralVolumePlugin)(nil), (*volume.BlockVolumePlugin)(nil),
	} {
		it := reflect.TypeOf(iface).Elem()
		if a, b := reflect.TypeOf(inner).Implements(it), reflect.TypeOf(plugins[0]).Implements(it); a != b {
			t.Errorf("%s: upstream's plugin %v, the wrapper %v", it, a, b)
		}
	}
}

// countingCSI is a CSI plugin that counts its Inits.
type countingCSI struct {
	csiPlugin
	inits chan volume.VolumeHost
}

func (c *countingCSI) GetPluginName() string { return csiPluginName }

func (c *countingCSI) Init(host volume.VolumeHost) error {
	c.inits <- host
	return nil
}

// TestCSIGuardReinits: after the controller-manager starts, the kubelet's
// plugin is inited again with the kubelet's own host; nothing happens
// before the kubelet inited it.
func TestCSIGuardReinits(t *testing.T) {
	g := NewCSIGuard(slog.New(slog.NewTextHandler(io.Discard, nil)))
	g.delays = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}
	inner := &countingCSI{inits: make(chan volume.VolumeHost, 10)}
	plugins := []volume.VolumePlugin{inner}
	g.wrap(plugins)
	g.reinit() // the kubelet has not inited it: no Init with a nil host
	select {
	case h := <-inner.inits:
		t.Fatalf("Init(%v) before the kubelet's", h)
	default:
	}
	var host volume.VolumeHost = fakeHost{}
	if err := plugins[0].Init(host); err != nil {
		t.Fatal(err)
	}
	<-inner.inits
	g.ControllersStarting()
	for i := range 2 {
		select {
		case h := <-inner.inits:
			if h != host {
				t.Fatalf("re-init %d with %v, want the kubelet's host", i, h)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("re-init %d did not happen", i)
		}
	}
}

type fakeHost struct{ volume.VolumeHost }
