// Package harness runs several kedge nodes on one Linux host for the
// end-to-end tests: each node is a "machine" made of Linux namespaces, with
// its own IP on a private bridge, its own directories over the fixed paths
// kedge uses, its own cgroup root for the kubelet, and the real kedge binary
// ($KEDGE_BIN) as its only daemon.
//
// A node is an init process (the test binary re-executed, see Main) created
// in new mount, PID, network, UTS and IPC namespaces. It prepares the mounts,
// then starts, kills and restarts kedge on request over a pipe, and reaps
// the orphans (containerd shims) as PID 1 does on a real machine. When it
// exits, the kernel kills everything left in the node and drops its
// namespaces, so a crashed test leaves at most a bridge and empty cgroups.
//
// What a node sees, per node (host side: <cluster dir>/<node>/…):
//
//	/run                 fresh (run/): /run/kedge, /run/netns, /run/containerd, /run/xtables.lock …
//	/var/lib/kedge       data/ — the default --data-dir
//	/var/lib/kubelet     kubelet/
//	/var/lib/cni         cni/ (host-local IPAM leases, CNI result cache)
//	/var/log             log/ (/var/log/pods, /var/log/containers)
//	/etc/kedge           etc-kedge/ (admin kubeconfig, optional config.yaml)
//	/etc, /var           the host's, copy-on-write (overlayfs, upper dirs in overlay/)
//	/proc, /sys          its own (PID and network namespaces); /sys/fs/cgroup is the host's
//	hostname             the node name (the default --node-name)
//	network              lo and eth0 = 172.31.250.<11+i>/24 on the host bridge kedge-e2e0
//	                     (172.31.250.1); no default route: nothing outside the bridge
//	kubelet cgroup root  /kedge-e2e-<cluster id>-<node> in every cgroup hierarchy
//
// Use it from a test package whose TestMain calls Main:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
//
//	func TestX(t *testing.T) {
//		c := harness.NewCluster(t)
//		a := c.AddNode("a")
//		c.Step("start a", func() { a.Start(); a.WaitReady(3 * time.Minute) })
//		out := a.MustKubectl("get", "nodes")
//	}
package harness
