// Package containerd runs containerd inside the kedge process, with its CRI
// plugin serving the kubelet on the same socket, and the image import of the
// node.
//
//	c := containerd.New(containerd.Config{
//		Root:         "/var/lib/kedge/agent/containerd",
//		State:        "/run/kedge/containerd",
//		Address:      "/run/kedge/containerd/containerd.sock",
//		BinDir:       assets.BinDir, // runc, containerd-shim-runc-v2
//		CNIBinDir:    assets.BinDir,
//		CNIConfDir:   "/var/lib/kedge/agent/etc/cni/net.d",
//		SandboxImage: "kedge.local/pause:1.0",
//		Host:         hostinfo.Detect(),
//		Log:          log,
//	})
//	if err := c.Start(ctx); err != nil { ... }
//	if err := c.Ready(ctx); err != nil { ... } // containerd and CRI answer
//	defer c.Stop(context.Background())        // containers keep running
//
// containerd finds the runc shim, containerd-shim-runc-v2, on PATH: Start
// puts BinDir first there. The shim is containerd's own standalone binary
// (pkg/embedded), one process per pod, not the kedge binary: measured, a
// shim is about 12 MB RSS (5 MiB private) where a kedge process running the
// shim was about 185 MB (17 MiB private).
//
// containerd's configuration is rendered by Render, a pure function of the
// Config and the snapshotter (overlayfs, or native where overlayfs does not
// work). Image tarballs are imported with ImportFile, or by an ImageImporter
// that watches a directory.
package containerd
