// Package kubelet runs the kubelet in the kedge process, from the upstream
// k8s.io/kubernetes/cmd/kubelet/app library: kedge renders a typed kubelet
// configuration (Render) and calls app.Run with its own context, never the
// cobra command, which would install a second process-wide signal handler and
// apply the logging configuration a second time.
//
//	k := kubelet.New(kubelet.Config{
//		NodeName:                 "node1",
//		NodeIP:                   net.ParseIP("192.0.2.10"),
//		RootDir:                  kubelet.DefaultRootDir,
//		Kubeconfig:               "/var/lib/kedge/agent/kubelet.kubeconfig",
//		ClientCAFile:             node.ClientCA,
//		ServingCert:              node.KubeletServingCert,
//		ServingKey:               node.KubeletServingKey,
//		ContainerRuntimeEndpoint: "unix:///run/kedge/containerd/containerd.sock",
//		ClusterDNS:               []net.IP{net.ParseIP("10.43.0.10")},
//		ClusterDomain:            "cluster.local",
//		Host:                     hostinfo.Detect(),
//		ResolvConf:               kubelet.HostResolvConf(),
//		Log:                      log,
//	})
//	if err := k.Start(ctx); err != nil { ... }
//	_ = k.Ready(ctx) // 127.0.0.1:10248/healthz answers ok
//	defer k.Stop(context.Background())
//
// The kubelet does not fully stop before the process exits: see Kubelet.Stop.
package kubelet
