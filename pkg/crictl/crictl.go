// Package crictl runs crictl (sigs.k8s.io/cri-tools, linked into kedge) in
// this process against the node's containerd.
//
// cri-tools' crictl is a main package, which Go does not import;
// scripts/gen-crictl.sh (make helpers) generates third_party/crictl from it,
// an importable copy with three mechanical rewrites listed in the script.
//
//	code := crictl.Run("/var/lib/kedge", "/run/kedge/containerd/containerd.sock", []string{"ps"})
package crictl

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/urfave/cli/v2"
	criversion "sigs.k8s.io/cri-tools/pkg/version"

	upstream "github.com/kedge-io/kedge/third_party/crictl"
)

// Run runs crictl with args and returns its exit code (crictl itself exits
// the process with 1 on a failed command). Unless CRI_CONFIG_FILE names
// another, crictl's config is <dataDir>/agent/etc/crictl.yaml, (re)written to
// point the runtime and image endpoints at the node's containerd socket at
// address. Run owns the process: it replaces os.Args, as crictl reads them.
func Run(dataDir, address string, args []string) int {
	if os.Getenv("CRI_CONFIG_FILE") == "" {
		conf, err := writeConfig(dataDir, address)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kedge crictl:", err)
			return 1
		}
		if err := os.Setenv("CRI_CONFIG_FILE", conf); err != nil {
			fmt.Fprintln(os.Stderr, "kedge crictl:", err)
			return 1
		}
	}
	// crictl prints the library's "NAME version VERSION" that scripts
	// parse. containerd's ctr, linked into kedge too, set urfave/cli's
	// global version printer to its own format until containerd 2.4, which
	// moved ctr to urfave/cli/v3 (crictl is on v2); kept so that this stays
	// true whatever else in the binary sets v2's printer.
	cli.VersionPrinter = func(c *cli.Context) {
		fmt.Fprintf(c.App.Writer, "%s version %s\n", c.App.Name, c.App.Version)
	}
	if v := moduleVersion("sigs.k8s.io/cri-tools"); v != "" {
		criversion.Version = v // what cri-tools' own build stamps in
	}
	os.Args = append([]string{"crictl"}, args...)
	upstream.Main()
	return 0
}

// writeConfig writes crictl's config for the containerd socket at address
// under dataDir, if it does not say that already, and returns its path.
func writeConfig(dataDir, address string) (string, error) {
	conf := filepath.Join(dataDir, "agent", "etc", "crictl.yaml")
	content := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\n", address, address)
	if old, err := os.ReadFile(conf); err == nil && string(old) == content {
		return conf, nil
	}
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(conf, []byte(content), 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", conf, err)
	}
	return conf, nil
}

// moduleVersion is the version of module path linked into this binary, ""
// if the build recorded none.
func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range info.Deps {
		if d.Path == path {
			if d.Replace != nil {
				d = d.Replace
			}
			return d.Version
		}
	}
	return ""
}
