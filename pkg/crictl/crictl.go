// Package crictl runs the bundled crictl (cri-tools, built by
// scripts/build-helpers.sh and embedded) against the node's containerd.
//
//	err := crictl.Exec("/var/lib/kedge", "/run/kedge/containerd/containerd.sock", []string{"ps"})
package crictl

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/kedge-io/kedge/pkg/embedded"
)

// Exec replaces the current process with crictl, run with args. Unless
// CRI_CONFIG_FILE names another, crictl's config is
// <dataDir>/agent/etc/crictl.yaml, (re)written to point the runtime and image
// endpoints at the node's containerd socket at address. The binary is
// extracted under dataDir first if this build's assets are not there yet.
// Exec returns only on error.
func Exec(dataDir, address string, args []string) error {
	assets, err := embedded.Extract(dataDir)
	if err != nil {
		return err
	}
	bin := filepath.Join(assets.BinDir, "crictl")
	env := os.Environ()
	if os.Getenv("CRI_CONFIG_FILE") == "" {
		conf := filepath.Join(dataDir, "agent", "etc", "crictl.yaml")
		content := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\n", address, address)
		if old, err := os.ReadFile(conf); err != nil || string(old) != content {
			if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(conf, []byte(content), 0o644); err != nil {
				return fmt.Errorf("write %s: %w", conf, err)
			}
		}
		env = append(env, "CRI_CONFIG_FILE="+conf)
	}
	if err := syscall.Exec(bin, append([]string{"crictl"}, args...), env); err != nil {
		return fmt.Errorf("exec %s: %w", bin, err)
	}
	return nil
}
