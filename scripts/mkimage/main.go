// Command mkimage writes a docker-archive image tarball holding one static
// binary, for containerd's image import (`ctr images import`). It is how
// scripts/build-helpers.sh builds kedge's embedded pause image:
//
//	go run ./scripts/mkimage -binary pause -path /pause -tag kedge.local/pause:1.0 -out pause.tar
//
// The logic lives in pkg/images/ociimage, which tests use directly.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/kedge-io/kedge/pkg/images/ociimage"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	binary := fs.String("binary", "", "static executable to put in the image (required)")
	pathIn := fs.String("path", "", "absolute path of the executable in the image; it is the entrypoint (required)")
	tag := fs.String("tag", "", "image name and tag, e.g. kedge.local/pause:1.0 (required)")
	out := fs.String("out", "", "tarball to write (required)")
	arch := fs.String("arch", runtime.GOARCH, "GOARCH the binary was built for")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, f := range []struct{ name, value string }{
		{"-binary", *binary}, {"-path", *pathIn}, {"-tag", *tag}, {"-out", *out},
	} {
		if f.value == "" {
			return fmt.Errorf("flag %s is required", f.name)
		}
	}
	bin, err := os.ReadFile(*binary)
	if err != nil {
		return fmt.Errorf("-binary: %w", err)
	}
	// Write beside the target and rename, so an interrupted run never
	// leaves a truncated tarball that looks finished.
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".mkimage-*")
	if err != nil {
		return fmt.Errorf("-out: %w", err)
	}
	defer os.Remove(tmp.Name())
	spec := ociimage.Spec{Binary: bin, Path: *pathIn, Arch: *arch}
	if err := ociimage.Write(spec, *tag, tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("-out %s: %w", *out, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("-out %s: %w", *out, err)
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return fmt.Errorf("-out: %w", err)
	}
	return nil
}
