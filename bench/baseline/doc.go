// Package baseline runs the benchmark baseline: the upstream components that
// kedge embeds, each as its own process from bench/bin (scripts/bench-build.sh),
// configured from kedge's own renderers (pkg/pki, the Args functions,
// kubelet.Render, containerd.Render, coredns.Corefile, flannel.NetConf) so
// that both setups run with the same certificates and the same settings —
// the Kubernetes "binary deployment" of what `kedge server` and `kedge agent`
// run in one process.
//
// A Server is the equivalent of `kedge server`: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy,
// flanneld (VXLAN) and CoreDNS on one node. A Node is the equivalent of
// `kedge agent`: containerd, kubelet, kube-proxy, flanneld and CoreDNS
// joining a running control plane. Both satisfy bench.Setup:
//
//	s := baseline.NewServer(baseline.ServerConfig{
//		Paths:   baseline.RepoPaths("/work/main"),
//		DataDir: dir,
//		Images:  []string{"webapp.tar"},
//	})
//	if err := s.Start(ctx); err != nil { ... } // execs and returns; nothing waits for readiness
//	defer s.Stop(context.Background())        // stops everything, cleans up as `kedge killall`
//	kubeconfig := s.Kubeconfig()
//
// What the baseline does beyond exec'ing processes is what an administrator
// (or systemd) does in a binary deployment, done from the calling process:
// it starts each process once what it needs is there (as systemd's After= and
// a readiness probe would: the controller-manager after the apiserver is
// ready, the kubelet after containerd serves and the images are imported),
// restarts a process that exits (systemd's Restart=always, RestartSec=1s),
// imports the images with ctr, applies kedge's built-in manifests (RBAC for
// flannel and CoreDNS, the kube-dns Service), labels the server's Node as a
// control plane, writes the bridge CNI configuration once flanneld has its
// lease (the job of flannel's CNI plugin, which is not built here), and
// publishes the node's kube-dns EndpointSlice once CoreDNS answers.
package baseline
