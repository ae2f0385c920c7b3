package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kedge-io/kedge/bench"
	"github.com/kedge-io/kedge/bench/baseline"
)

// baselineSet makes the baseline's setups (package bench/baseline): the
// upstream executables of scripts/bench-build.sh, with kedge's own runc,
// shim, CNI plugins and pause image (make helpers).
type baselineSet struct {
	paths    baseline.Paths
	download []string // every file of the baseline's download
}

// newBaselineSet checks that everything the baseline runs is built.
func newBaselineSet(repo, binDir string) (*baselineSet, error) {
	paths := baseline.RepoPaths(repo)
	paths.BinDir = binDir
	if err := paths.Check(); err != nil {
		return nil, err
	}
	b := &baselineSet{paths: paths}
	for _, name := range baseline.Executables {
		b.download = append(b.download, filepath.Join(paths.BinDir, name))
	}
	// What containerd and the kubelet exec, and the pause image: kedge
	// carries the same files inside its binary.
	for _, name := range []string{"runc", "containerd-shim-runc-v2", "bridge", "host-local", "loopback", "portmap"} {
		b.download = append(b.download, filepath.Join(paths.HelperDir, name))
	}
	b.download = append(b.download, paths.PauseImageTar)
	return b, nil
}

// server returns a factory of baseline servers importing image.
func (b *baselineSet) server(image string) func(dir string, w io.Writer) (bench.Setup, <-chan struct{}) {
	return func(dir string, w io.Writer) (bench.Setup, <-chan struct{}) {
		fresh(dir, w)
		s := baseline.NewServer(baseline.ServerConfig{
			Paths:       b.paths,
			DataDir:     dir,
			NodeOptions: baseline.NodeOptions{NodeName: "bench", Images: []string{image}},
		})
		return s, nil // the baseline restarts what exits, as systemd would
	}
}

// node returns a factory of baseline nodes joining the kedge control plane
// server (they issue their certificates from its CAs, as its supervisor
// would).
func (b *baselineSet) node(dir string, server *bench.Kedge, w io.Writer) bench.NodeFactory {
	return func(url, _ string) bench.Setup {
		fmt.Fprintf(w, "baseline node in %s joins %s\n", dir, url)
		fresh(dir, w)
		return baseline.NewNode(baseline.NodeConfig{
			Paths:           b.paths,
			DataDir:         dir,
			NodeOptions:     baseline.NodeOptions{NodeName: "bench-node"},
			ServerURL:       url,
			ServerTLSDir:    filepath.Join(server.DataDir(), "server", "tls"),
			AdminKubeconfig: server.Kubeconfig(),
		})
	}
}

// fresh empties a baseline's data dir before a run, as kedge's runs start
// on a new data dir: otherwise the etcd data, the Node object with its
// Ready status, the images and the CNI config of the previous run would
// make the baseline's start look faster than a first start is.
func fresh(dir string, w io.Writer) {
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintf(w, "baseline: empty %s: %v\n", dir, err)
	}
}
