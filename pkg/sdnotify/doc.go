// Package sdnotify tells the service manager how kedge's start is going,
// with systemd's notify protocol (sd_notify(3)): STATUS= lines while the
// node starts, READY=1 once it serves, STOPPING=1 when it shuts down. The
// installed unit is Type=notify, so `systemctl start kedge` returns, and the
// unit shows active (running), only when the node is Ready.
//
//	sd := sdnotify.FromEnv(log) // first thing: takes NOTIFY_SOCKET out of the environment
//	context.AfterFunc(ctx, sd.Stopping)
//	sd.Status("waiting for etcd and the control plane")
//	... start the components ...
//	go sd.ReadyWhen(ctx, "kedge server ready", sdnotify.NodeReady(kubeconfig, nodeName))
//
// Without NOTIFY_SOCKET (not started by systemd, or by a unit of another
// Type) every method does nothing.
//
// NOTIFY_SOCKET is process-global state that kedge removes: FromEnv unsets
// it, because the embedded kubelet sends READY=1 on its own as soon as it
// starts (cmd/kubelet/app.run), long before the node is Ready, and runc,
// which kedge's containerd runs, would hand the socket to every container.
// That is also why this package sends to the socket it took instead of
// calling go-systemd's daemon.SdNotify, which reads the environment on every
// call; the messages are go-systemd's.
package sdnotify
