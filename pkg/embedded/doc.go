// Package embedded carries the helper executables and the pause image that
// kedge's containerd needs, compiled into the kedge binary so a node never
// downloads anything at run time: runc, containerd's runc shim
// containerd-shim-runc-v2 (the standalone binary, one small process per pod),
// the CNI plugins bridge, host-local, loopback and portmap, and the pause
// image (PauseImage), built from source by scripts/build-helpers.sh
// (`make helpers`) into assets/ and packed, one zstd-compressed tar and its
// manifest, into packed/, which is what the binary carries.
//
// On start the agent extracts them once per build into a content-addressed
// directory of its data dir and points containerd at it:
//
//	a, err := embedded.Extract("/var/lib/kedge")
//	if err != nil {
//		return err // e.g. a `go build` without `make helpers`
//	}
//	// a.BinDir:        runc, containerd-shim-runc-v2, CNI plugins
//	// a.PauseImageTar: docker-archive tarball holding embedded.PauseImage
//
// A binary built without the assets (only packed/.gitkeep present) still
// compiles and runs; Extract then returns ErrNotBuilt.
package embedded
