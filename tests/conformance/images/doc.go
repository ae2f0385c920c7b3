// Package images builds, offline, the stand-ins of the images the
// Kubernetes conformance specs run, and serves them from a registry.
//
// The e2e suite names its images itself (`e2e.test --list-images`:
// registry.k8s.io/e2e-test-images/agnhost:2.63.0, …/busybox:1.37.0-1,
// registry.k8s.io/pause:3.10.2, …). Upstream builds them from
// test/images/<name>/Dockerfile over Alpine and Docker Hub bases; here each
// is rebuilt from what the same Dockerfile puts in, taken from Go sources
// of the Kubernetes version kedge embeds (agnhost, nonewprivs,
// sample-apiserver, built by scripts/conformance-tools.sh) and from Debian
// packages (a debootstrap rootfs, cached in CacheDir), and tagged with the
// exact reference the suite asks for. docs/conformance.md lists every
// stand-in and how it differs from upstream's.
//
//	set, err := images.NewBuilder(toolsDir, k8sDir, pauseTar).Build(refs)
//	reg, err := images.Serve(addr, dir)   // TLS, its own CA
//	err = reg.Push(ctx, set)             // then point the nodes at reg as a mirror of registry.k8s.io
package images
