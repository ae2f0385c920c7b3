package localstorage

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

func testNode(name, root string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{hostnameLabel: name + "-host"}}}
	if root != "" {
		n.Annotations = map[string]string{PathAnnotation: root}
	}
	return n
}

func nodes(list ...*corev1.Node) func(context.Context, string) (*corev1.Node, error) {
	return func(_ context.Context, name string) (*corev1.Node, error) {
		for _, n := range list {
			if n.Name == name {
				return n, nil
			}
		}
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "nodes"}, name)
	}
}

func options(node string, policy corev1.PersistentVolumeReclaimPolicy, modes ...corev1.PersistentVolumeAccessMode) controller.ProvisionOptions {
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	return controller.ProvisionOptions{
		StorageClass:     &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: StorageClassName}, Provisioner: ProvisionerName, ReclaimPolicy: &policy},
		PVName:           "pvc-1234",
		SelectedNodeName: node,
		PVC: &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "data-web-0", Namespace: "shop"},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: modes, Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		},
	}
}

// TestProvision: the volume is a directory of the selected node's root,
// bound to that node, with the finalizer its node removes.
func TestProvision(t *testing.T) {
	p := &Provisioner{Node: nodes(testNode("n1", "/srv/storage"), testNode("n2", "/var/lib/kedge/storage"))}
	for _, policy := range []corev1.PersistentVolumeReclaimPolicy{corev1.PersistentVolumeReclaimDelete, corev1.PersistentVolumeReclaimRetain} {
		pv, state, err := p.Provision(context.Background(), options("n2", policy))
		if err != nil || state != controller.ProvisioningFinished {
			t.Fatalf("Provision: %v, %s", err, state)
		}
		if got, want := pv.Spec.Local.Path, "/var/lib/kedge/storage/pvc-1234_shop_data-web-0"; got != want {
			t.Errorf("path %s, want %s", got, want)
		}
		req := pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0]
		if req.Key != hostnameLabel || req.Operator != corev1.NodeSelectorOpIn || len(req.Values) != 1 || req.Values[0] != "n2-host" {
			t.Errorf("node affinity %+v; want %s In [n2-host]", req, hostnameLabel)
		}
		if pv.Annotations[NodeAnnotation] != "n2" || pv.Labels[NodeLabel] != "n2" {
			t.Errorf("annotations %v, labels %v; want the node n2 in both", pv.Annotations, pv.Labels)
		}
		if len(pv.Finalizers) != 1 || pv.Finalizers[0] != Finalizer {
			t.Errorf("finalizers %v; want [%s]", pv.Finalizers, Finalizer)
		}
		if pv.Spec.PersistentVolumeReclaimPolicy != policy {
			t.Errorf("reclaim policy %s; want the class's %s", pv.Spec.PersistentVolumeReclaimPolicy, policy)
		}
		if q := pv.Spec.Capacity[corev1.ResourceStorage]; q.String() != "1Gi" {
			t.Errorf("capacity %s; want the claim's 1Gi", q.String())
		}
		if *pv.Spec.VolumeMode != corev1.PersistentVolumeFilesystem || pv.Spec.AccessModes[0] != corev1.ReadWriteOnce {
			t.Errorf("volume mode %s, access modes %v", *pv.Spec.VolumeMode, pv.Spec.AccessModes)
		}
	}
}

// TestProvisionRefuses: every refusal says why, and whether it is retried.
func TestProvisionRefuses(t *testing.T) {
	p := &Provisioner{Node: nodes(testNode("bare", ""), testNode("relative", "storage"), testNode("slash", "/"), testNode("dotted", "/srv/../etc"))}
	params := options("bare", corev1.PersistentVolumeReclaimDelete)
	params.StorageClass.Parameters = map[string]string{"path": "/etc"}
	long := options("bare", corev1.PersistentVolumeReclaimDelete)
	long.PVName = "../../etc"
	for _, tc := range []struct {
		name  string
		opts  controller.ProvisionOptions
		state controller.ProvisioningState
		want  string
	}{
		{"no node", options("", corev1.PersistentVolumeReclaimDelete), controller.ProvisioningFinished, "WaitForFirstConsumer"},
		{"parameters", params, controller.ProvisioningFinished, "takes no parameters"},
		{"RWX", options("bare", corev1.PersistentVolumeReclaimDelete, corev1.ReadWriteMany), controller.ProvisioningFinished, "ReadWriteOnce"},
		{"node gone", options("gone", corev1.PersistentVolumeReclaimDelete), controller.ProvisioningReschedule, "gone"},
		{"no path yet", options("bare", corev1.PersistentVolumeReclaimDelete), controller.ProvisioningInBackground, PathAnnotation},
		{"relative root", options("relative", corev1.PersistentVolumeReclaimDelete), controller.ProvisioningFinished, "absolute"},
		{"root /", options("slash", corev1.PersistentVolumeReclaimDelete), controller.ProvisioningFinished, "other than /"},
		{"unclean root", options("dotted", corev1.PersistentVolumeReclaimDelete), controller.ProvisioningFinished, "clean"},
	} {
		pv, state, err := p.Provision(context.Background(), tc.opts)
		if err == nil || pv != nil || state != tc.state || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, %q, %v; want state %s and an error naming %q", tc.name, pv, state, err, tc.state, tc.want)
		}
	}
	// A name that is not one path element: the node annotation is fine, the
	// volume name is not.
	p = &Provisioner{Node: nodes(testNode("bare", "/srv"))}
	if _, _, err := p.Provision(context.Background(), long); err == nil {
		t.Errorf("PV name %q provisioned", long.PVName)
	}
}

// TestVolumeDir: one path element, always.
func TestVolumeDir(t *testing.T) {
	if d, err := VolumeDir("pvc-1", "ns", "c"); err != nil || d != "pvc-1_ns_c" {
		t.Errorf("VolumeDir = %q, %v", d, err)
	}
	if d, err := VolumeDir("pvc-1", "ns", strings.Repeat("c", 253)); err != nil || d != "pvc-1" {
		t.Errorf("long claim name: VolumeDir = %q, %v; want the PV name alone", d, err)
	}
	for _, parts := range [][3]string{{"..", "ns", "c"}, {"pvc", "a/b", "c"}, {"pvc", "ns", ""}, {"pvc", ".", "c"}, {"p\\q", "ns", "c"}, {strings.Repeat("p", 256), "ns", "c"}} {
		if d, err := VolumeDir(parts[0], parts[1], parts[2]); err == nil {
			t.Errorf("VolumeDir%q = %q; want an error", parts, d)
		}
	}
}

// TestInRoot: only a directory right below the root passes.
func TestInRoot(t *testing.T) {
	root := "/var/lib/kedge/storage"
	if d, err := InRoot(root, root+"/pvc-1_ns_c"); err != nil || d != "pvc-1_ns_c" {
		t.Errorf("InRoot = %q, %v", d, err)
	}
	for _, path := range []string{root, root + "/", root + "/a/b", root + "/..", root + "/../x", root + "x/pvc", "/etc", "pvc", root + "/./pvc", "/var/lib/kedge/pvc", ""} {
		if d, err := InRoot(root, path); err == nil {
			t.Errorf("InRoot(%q) = %q; want an error", path, d)
		}
	}
}

// TestDelete: a kedge volume's deletion is left to its node (the
// finalizer); another provisioner's volume is ignored.
func TestDelete(t *testing.T) {
	p := &Provisioner{}
	ours := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-1", Annotations: map[string]string{NodeAnnotation: "n1"}, Finalizers: []string{Finalizer}}}
	if err := p.Delete(context.Background(), ours); err != nil {
		t.Errorf("Delete(ours) = %v", err)
	}
	var ignored *controller.IgnoredError
	if err := p.Delete(context.Background(), &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "other"}}); !errors.As(err, &ignored) {
		t.Errorf("Delete(other) = %v; want an IgnoredError", err)
	}
}

// TestCheckRoot names the flag.
func TestCheckRoot(t *testing.T) {
	if err := CheckRoot("--default-local-storage-path", "/srv/storage"); err != nil {
		t.Error(err)
	}
	for _, r := range []string{"", "rel", "/", "/a/../b", "/a/"} {
		if err := CheckRoot("--default-local-storage-path", r); err == nil || !strings.Contains(err.Error(), "--default-local-storage-path") {
			t.Errorf("CheckRoot(%q) = %v", r, err)
		}
	}
}
