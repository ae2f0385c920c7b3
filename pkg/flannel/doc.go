// Package flannel is a node's pod network: flannel's VXLAN (default) or
// host-gw backend, run in the kedge process from flannel's Go packages, and
// the CNI configuration containerd uses for every pod sandbox.
//
// What happens on Start, in the background:
//
//  1. wait until the controller-manager assigns the Node its pod CIDR (a /24
//     of --cluster-cidr);
//  2. flannel's kube subnet manager (pkg/subnet/kube) takes that CIDR as the
//     node's lease and publishes the flannel.alpha.coreos.com/* annotations
//     (backend-type, backend-data with the VTEP MAC, public-ip) on the Node;
//     it watches every Node for the other nodes' leases;
//  3. the backend creates flannel.1 (VXLAN over UDP 8472, its MTU the
//     interface's minus 50) or nothing (host-gw), and routes every other
//     node's pod CIDR;
//  4. flannel's iptables traffic manager installs FLANNEL-POSTRTG (masquerade
//     pod traffic leaving the cluster CIDR, never pod-to-pod) and FLANNEL-FWD
//     (accept forwarding to and from the cluster CIDR), and keeps them;
//  5. the CNI configuration is written: bridge cni0 with host-local IPAM over
//     the node's pod CIDR, flannel's MTU, and no masquerade of its own
//     (ipMasq false: flannel's rules decide what leaves the cluster CIDR).
//
// kedge writes the bridge configuration itself instead of installing the
// flannel CNI plugin, which would only read flannel's subnet.env and
// delegate to the same bridge plugin.
//
// Identity: flannel runs as the node's kubelet (system:node:<name>). The Node
// authorizer and the NodeRestriction admission plugin let it patch only its
// own Node (annotations and the NetworkUnavailable condition, through
// nodes/status), which is exactly what flannel writes. Since Kubernetes 1.34
// (AuthorizeNodeWithSelectors, GA) a node may read only its own Node, so the
// kedge:flannel ClusterRole (manifests/flannel.yaml) lets the group
// system:nodes list and watch all Nodes, as flannel must to learn the other
// nodes' leases.
//
// Stop ends flannel's goroutines and leaves flannel.1, the routes and the
// iptables rules in place for the pods that keep running; kedge killall
// removes them.
//
//	f := flannel.New(flannel.Config{
//		NodeName: "n1", NodeIP: ip, Backend: flannel.VXLAN, ClusterCIDR: "10.42.0.0/16",
//		Kubeconfig: kubeletKubeconfig, Dir: "/var/lib/kedge/agent/etc/flannel",
//		CNIConfDir: "/var/lib/kedge/agent/etc/cni/net.d", Log: log,
//	})
//	_ = f.Start(ctx)
//	_ = f.Ready(ctx) // flannel.1 is up and the CNI configuration is written
package flannel
