// Package localstorage is kedge's local-path storage: PersistentVolumes in
// directories on the node a pod lands on, with no helper pod and no image.
//
// Two halves:
//
//   - The Controller runs on servers, under the Lease LeaseName: a
//     sigs.k8s.io/sig-storage-lib-external-provisioner ProvisionController
//     with the Provisioner of this package. For a claim of the StorageClass
//     StorageClassName (WaitForFirstConsumer) it creates a `local`
//     PersistentVolume at <storage path of the selected node>/<volume dir>,
//     with node affinity to that node, the annotation NodeAnnotation and the
//     finalizer Finalizer.
//   - The Node runs on every node (servers' own and agents) with the
//     kubelet's credentials. It writes the node's storage root to its Node
//     (PathAnnotation), creates the directory of each volume of this node
//     (mode 0777, so that a pod of any UID writes to it), and, when a volume
//     of this node is deleted, removes the directory (reclaim policy
//     Delete; Retain keeps it) and then the finalizer.
//
// A node holds its own volumes only: the manifest local-storage.yaml lets
// nodes patch PersistentVolumes, and its ValidatingAdmissionPolicy narrows
// that to removing Finalizer from a volume being deleted whose
// NodeAnnotation names the node itself. Paths never leave the storage root:
// VolumeDir builds a single path element, the Node checks every path
// against its root (InRoot) and works through an os.Root.
//
//	ctrl := localstorage.NewController(localstorage.ControllerConfig{Kubeconfig: admin, Log: log})
//	node := localstorage.NewNode(localstorage.NodeConfig{NodeName: "n1", Root: "/var/lib/kedge/storage", Kubeconfig: kubelet, Log: log})
package localstorage
