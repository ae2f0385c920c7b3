// Package ociimage builds single-binary container images without a
// registry or a container engine: one layer holding one static executable,
// a config whose entrypoint is that executable, written as a docker-archive
// tarball that containerd's image import (and `ctr images import`) accepts.
//
// kedge builds its embedded pause image with it (scripts/mkimage), and
// tests use it to build small test images on the fly:
//
//	bin, _ := os.ReadFile("bin/pause")
//	f, _ := os.Create("pause.tar")
//	defer f.Close()
//	err := ociimage.Build(bin, "/pause", "kedge.local/pause:1.0", f)
package ociimage
