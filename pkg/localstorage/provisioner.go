package localstorage

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

// Addon is the --disable name of local-path storage: the StorageClass and
// the provisioner on servers, the directories on every node.
const Addon = "local-storage"

// ProvisionerName is the StorageClass provisioner kedge serves.
const ProvisionerName = "kedge.io/local-path"

// StorageClassName is the default StorageClass (manifests/local-storage.yaml).
const StorageClassName = "local-path"

// Finalizer keeps a volume until its node has removed the directory
// (reclaim policy Delete) or let it be (Retain).
const Finalizer = "kedge.io/local-path"

// NodeAnnotation names, on a PersistentVolume, the node holding its
// directory; NodeLabel has the same value, for the nodes' watch.
const (
	NodeAnnotation = "kedge.io/local-path-node"
	NodeLabel      = "kedge.io/local-path-node"
)

// PathAnnotation holds, on a Node, that node's --default-local-storage-path.
const PathAnnotation = "kedge.io/local-storage-path"

// DefaultDir is the storage root under the data dir (the default of
// --default-local-storage-path: <data-dir>/storage).
const DefaultDir = "storage"

// hostnameLabel is the Node label the volumes' node affinity matches.
const hostnameLabel = "kubernetes.io/hostname"

// maxName is the longest directory name most file systems take.
const maxName = 255

// CheckRoot checks a storage root: an absolute, clean path other than /.
// flag names the setting in the error.
func CheckRoot(flag, root string) error {
	if !filepath.IsAbs(root) || filepath.Clean(root) != root || root == "/" {
		return fmt.Errorf("%s %q: want an absolute, clean path other than / (e.g. /var/lib/kedge/storage)", flag, root)
	}
	return nil
}

// VolumeDir is the directory name of a volume: <pv>_<namespace>_<claim>,
// or <pv> alone when that would be too long. It is always one path element.
func VolumeDir(pv, namespace, claim string) (string, error) {
	for _, part := range []string{pv, namespace, claim} {
		if part == "" || part == "." || part == ".." || strings.ContainsAny(part, `/\`+"\x00") {
			return "", fmt.Errorf("volume name %q, namespace %q, claim %q: not usable as a directory name", pv, namespace, claim)
		}
	}
	name := pv + "_" + namespace + "_" + claim
	if len(name) > maxName {
		name = pv
	}
	if len(name) > maxName {
		return "", fmt.Errorf("volume name %q: longer than %d bytes", pv, maxName)
	}
	return name, nil
}

// InRoot returns the single path element of path below root, or an error
// if path is anything else (root itself, deeper, outside, or not clean).
func InRoot(root, path string) (string, error) {
	if filepath.Clean(path) != path || filepath.Dir(path) != root {
		return "", fmt.Errorf("path %q is not a directory directly under the storage root %s", path, root)
	}
	name := filepath.Base(path)
	if !filepath.IsLocal(name) || name == "." {
		return "", fmt.Errorf("path %q is not a directory directly under the storage root %s", path, root)
	}
	return name, nil
}

// Provisioner makes the PersistentVolume of a claim on its selected node.
type Provisioner struct {
	// Node returns a Node by name (the API, or a lister).
	Node func(ctx context.Context, name string) (*corev1.Node, error)
}

var _ controller.Provisioner = (*Provisioner)(nil)

// Provision returns the PersistentVolume of opts' claim: a `local` volume in
// the selected node's storage root, with node affinity to that node. The
// directory is created by the node when it sees the volume.
func (p *Provisioner) Provision(ctx context.Context, opts controller.ProvisionOptions) (*corev1.PersistentVolume, controller.ProvisioningState, error) {
	claim := opts.PVC
	if opts.SelectedNodeName == "" {
		return nil, controller.ProvisioningFinished, fmt.Errorf("StorageClass %s: no node selected; a %s class needs volumeBindingMode: WaitForFirstConsumer", opts.StorageClass.Name, ProvisionerName)
	}
	if len(opts.StorageClass.Parameters) > 0 {
		return nil, controller.ProvisioningFinished, fmt.Errorf("StorageClass %s: %s takes no parameters (got %v)", opts.StorageClass.Name, ProvisionerName, slices.Sorted(maps.Keys(opts.StorageClass.Parameters)))
	}
	for _, m := range claim.Spec.AccessModes {
		if m != corev1.ReadWriteOnce && m != corev1.ReadWriteOncePod {
			return nil, controller.ProvisioningFinished, fmt.Errorf("access mode %s: a local-path volume is on one node; use ReadWriteOnce or ReadWriteOncePod", m)
		}
	}
	node, err := p.Node(ctx, opts.SelectedNodeName)
	if apierrors.IsNotFound(err) {
		return nil, controller.ProvisioningReschedule, fmt.Errorf("selected node %s is gone", opts.SelectedNodeName)
	} else if err != nil {
		return nil, controller.ProvisioningInBackground, fmt.Errorf("node %s: %w", opts.SelectedNodeName, err)
	}
	root := node.Annotations[PathAnnotation]
	if root == "" {
		// kedge on that node has not written its storage path yet (it does
		// when it starts): retried.
		return nil, controller.ProvisioningInBackground, fmt.Errorf("node %s has not reported its local storage path yet (annotation %s; is kedge's local storage running there?)", node.Name, PathAnnotation)
	}
	if err := CheckRoot("node "+node.Name+" annotation "+PathAnnotation, root); err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	dir, err := VolumeDir(opts.PVName, claim.Namespace, claim.Name)
	if err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	hostname := node.Labels[hostnameLabel]
	if hostname == "" {
		hostname = node.Name
	}
	policy := corev1.PersistentVolumeReclaimDelete
	if opts.StorageClass.ReclaimPolicy != nil {
		policy = *opts.StorageClass.ReclaimPolicy
	}
	mode := corev1.PersistentVolumeFilesystem
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        opts.PVName,
			Labels:      map[string]string{NodeLabel: node.Name},
			Annotations: map[string]string{NodeAnnotation: node.Name},
			Finalizers:  []string{Finalizer},
		},
		Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: policy,
			AccessModes:                   claim.Spec.AccessModes,
			VolumeMode:                    &mode,
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: claim.Spec.Resources.Requests[corev1.ResourceStorage]},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				Local: &corev1.LocalVolumeSource{Path: filepath.Join(root, dir)},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: hostnameLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{hostname},
				}}}},
			}},
			MountOptions: opts.StorageClass.MountOptions,
		},
	}
	return pv, controller.ProvisioningFinished, nil
}

// Delete lets the volume's node do the work: the API deletes the volume,
// whose Finalizer keeps it (Terminating) until the node has removed the
// directory, also while the node is offline. A volume of another
// provisioner is ignored.
func (p *Provisioner) Delete(_ context.Context, pv *corev1.PersistentVolume) error {
	if pv.Annotations[NodeAnnotation] == "" {
		return &controller.IgnoredError{Reason: "not a kedge local-path volume (no " + NodeAnnotation + " annotation)"}
	}
	return nil
}
