package containerd

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	srvconfig "github.com/containerd/containerd/v2/cmd/containerd/server/config"
	"github.com/containerd/containerd/v2/version"
	"github.com/containerd/platforms"

	"github.com/kedge-io/kedge/pkg/hostinfo"
	"github.com/kedge-io/kedge/pkg/registries"
)

// Snapshotters kedge chooses between: overlayfs when the kernel and the
// backing filesystem of Root support it, native (plain copies) otherwise.
const (
	SnapshotterOverlay = "overlayfs"
	SnapshotterNative  = "native"
)

// Namespace is the containerd namespace of the CRI plugin, where the
// kubelet's images and containers live.
const Namespace = "k8s.io"

// RuntimeType is the containerd runtime (shim) that runs pods: runc through
// containerd-shim-runc-v2.
const RuntimeType = "io.containerd.runc.v2"

// maxShimSocketDir is containerd's limit on the shim socket directory on
// Linux (core/runtime/v2/socket_linux.go); longer paths cannot be used.
const maxShimSocketDir = 42

// maxUnixSocketPath is the usable length of a unix socket path (sun_path is
// 108 bytes including the terminating NUL).
const maxUnixSocketPath = 107

// Config describes the embedded containerd of one node.
type Config struct {
	// Root holds persistent data: content, snapshots, metadata
	// (e.g. <data-dir>/agent/containerd).
	Root string
	// State holds runtime state: sockets of the shims, task bundles
	// (e.g. /run/kedge/containerd).
	State string
	// Address is the gRPC socket (e.g. /run/kedge/containerd/containerd.sock);
	// the TTRPC socket is Address + ".ttrpc". The kubelet talks CRI on Address.
	Address string
	// BinDir holds runc and containerd-shim-runc-v2 (containerd's
	// standalone runc shim). Start prepends it to the process PATH, which is
	// how containerd finds the shim; runc is run as BinDir/runc.
	BinDir string
	// CNIBinDir and CNIConfDir are where the CRI plugin finds the CNI plugins
	// and the network configuration.
	CNIBinDir  string
	CNIConfDir string
	// SandboxImage is the pause image of every pod, pinned in the CRI plugin.
	// It must be imported before the first pod starts (it is never pulled).
	SandboxImage string
	// RegistryDir is the CRI plugin's registry config_path (e.g.
	// <data-dir>/agent/etc/containerd/certs.d): Start replaces its content
	// with the host directories of Registries. Always set, so that the
	// host's /etc/containerd/certs.d is never read.
	RegistryDir string
	// Registries are the node's mirrors and registry credentials
	// (registries.yaml); the zero value configures none.
	Registries registries.Registries
	// Host decides the cgroup driver and whether containers may get a
	// negative oom_score_adj.
	Host hostinfo.Host
	// Debug lets containerd's info lines through (warnings and errors
	// otherwise).
	Debug bool
	// Log receives containerd's lines, with component=containerd.
	Log *slog.Logger
}

// TTRPCAddress is the socket the shims publish events on.
func (c Config) TTRPCAddress() string { return c.Address + ".ttrpc" }

// RuncBinary is the runc executable the shim runs.
func (c Config) RuncBinary() string { return filepath.Join(c.BinDir, "runc") }

// validate checks what containerd would otherwise fail on late or obscurely.
func (c Config) validate() error {
	for _, d := range []struct{ name, path string }{
		{"Root", c.Root}, {"State", c.State}, {"Address", c.Address}, {"BinDir", c.BinDir},
		{"CNIBinDir", c.CNIBinDir}, {"CNIConfDir", c.CNIConfDir}, {"RegistryDir", c.RegistryDir},
	} {
		if !filepath.IsAbs(d.path) {
			return fmt.Errorf("containerd: %s %q must be an absolute path", d.name, d.path)
		}
	}
	if filepath.Clean(c.Root) == filepath.Clean(c.State) {
		return fmt.Errorf("containerd: Root and State must differ (both %s)", c.Root)
	}
	if len(c.TTRPCAddress()) > maxUnixSocketPath {
		return fmt.Errorf("containerd: socket path %s is longer than %d bytes", c.TTRPCAddress(), maxUnixSocketPath)
	}
	if c.SandboxImage == "" {
		return fmt.Errorf("containerd: no SandboxImage")
	}
	if c.Log == nil {
		return fmt.Errorf("containerd: no Log")
	}
	return nil
}

// DisabledPlugins returns the URIs of the plugins Render disables: those
// compiled into kedge (through containerd's builtins) that a node does not
// use, and overlayfs when the snapshotter is native. Not loading them saves
// memory and start-up time, and keeps containerd away from host paths it
// would otherwise claim: the opt plugin creates /opt/containerd/{bin,lib}
// and puts them first in PATH and LD_LIBRARY_PATH (before BinDir), NRI
// listens on /var/run/nri/nri.sock, the image verifiers run what is in
// /opt/containerd/image-verifier/bin.
func DisabledPlugins(snapshotter string) []string {
	out := []string{
		"io.containerd.snapshotter.v1.btrfs",
		"io.containerd.snapshotter.v1.zfs",
		"io.containerd.snapshotter.v1.devmapper",
		"io.containerd.snapshotter.v1.blockfile",
		"io.containerd.snapshotter.v1.erofs",
		"io.containerd.differ.v1.erofs",
		"io.containerd.mount-handler.v1.erofs",
		"io.containerd.internal.v1.tracing",
		"io.containerd.tracing.processor.v1.otlp",
		"io.containerd.ttrpc.v1.otelttrpc",
		"io.containerd.metrics.v1.grpc-prometheus",
		"io.containerd.metrics.v1.grpc-otel",
		"io.containerd.nri.v1.nri",
		"io.containerd.image-verifier.v1.bindir",
		"io.containerd.internal.v1.opt",
	}
	if snapshotter != SnapshotterOverlay {
		out = append(out, "io.containerd.snapshotter.v1."+SnapshotterOverlay)
	}
	return out
}

// Render returns containerd's configuration for cfg with the given
// snapshotter (SnapshotterOverlay or SnapshotterNative). Plugin sections are
// in the TOML shape `containerd config default` prints (maps keyed by the
// TOML names), because the CRI plugins' typed configurations are internal to
// containerd; containerd decodes each section into its plugin's defaults.
func Render(cfg Config, snapshotter string) *srvconfig.Config {
	shimSocketDir := filepath.Join(cfg.State, "s")
	shim := map[string]any{}
	if len(shimSocketDir) <= maxShimSocketDir {
		shim["socket_dir"] = shimSocketDir
	} // else containerd's default, /run/containerd/s
	return &srvconfig.Config{
		Version:         version.ConfigVersion,
		Root:            cfg.Root,
		State:           cfg.State,
		DisabledPlugins: DisabledPlugins(snapshotter),
		// Without CRI the node is useless: fail the start instead of
		// serving a containerd the kubelet cannot talk to.
		RequiredPlugins: []string{"io.containerd.grpc.v1.cri"},
		// bbolt waits forever for the lock of a metadata database another
		// containerd holds; fail instead.
		Timeouts: map[string]string{"io.containerd.timeout.bolt.open": "10s"},
		Plugins: map[string]any{
			"io.containerd.server.v1.grpc":  map[string]any{"address": cfg.Address},
			"io.containerd.server.v1.ttrpc": map[string]any{"address": cfg.TTRPCAddress()},
			"io.containerd.shim.v1.manager": shim,
			// containerd's Prometheus endpoint is not served (the kubelet
			// reads stats through CRI); registering the metrics also panics
			// when a second containerd starts in the same process.
			"io.containerd.monitor.task.v1.cgroups": map[string]any{"no_prometheus": true},
			"io.containerd.transfer.v1.local": map[string]any{
				"unpack_config": []any{map[string]any{
					"platform":    platforms.Format(platforms.DefaultSpec()),
					"snapshotter": snapshotter,
					"differ":      "walking",
				}},
			},
			"io.containerd.cri.v1.images": map[string]any{
				"snapshotter":   snapshotter,
				"pinned_images": map[string]any{"sandbox": cfg.SandboxImage},
				"registry":      registryConfig(cfg),
			},
			"io.containerd.cri.v1.runtime": map[string]any{
				"restrict_oom_score_adj": !cfg.Host.CanRaiseOOMPriority,
				"cni": map[string]any{
					"bin_dirs":     []any{cfg.CNIBinDir},
					"conf_dir":     cfg.CNIConfDir,
					"max_conf_num": 1,
				},
				"containerd": map[string]any{
					"default_runtime_name": "runc",
					"runtimes": map[string]any{
						"runc": map[string]any{
							"runtime_type": RuntimeType,
							"sandboxer":    "podsandbox",
							"options": map[string]any{
								"BinaryName":    cfg.RuncBinary(),
								"SystemdCgroup": cfg.Host.Systemd,
								// keyctl refused (a seccomp filter, inherited by
								// every container): runc keeps the session keyring
								// instead of failing each container.
								"NoNewKeyring": cfg.Host.KeyringRefused,
								// runc's state of kedge's containers, apart from
								// a host containerd's /run/containerd/runc.
								"Root": filepath.Join(cfg.State, "runc"),
							},
						},
					},
				},
			},
		},
	}
}

// registryConfig is the CRI plugin's registry section: the host
// directories, and the credentials by host. containerd 2.3 reads
// credentials only from the kubelet's pull request (image pull secrets) or
// from registry.configs.<host>.auth, deprecated since 2.0 but kept "until a
// suitable secret management alternative is available" (docs/cri/registry.md):
// hosts.toml has no credentials by design. Setting configs makes the CRI
// plugin pull with its own client instead of the transfer service
// (CheckLocalImagePullConfigs); without credentials it stays on the
// transfer service.
func registryConfig(cfg Config) map[string]any {
	reg := map[string]any{"config_path": cfg.RegistryDir}
	auths := cfg.Registries.Auths()
	if len(auths) == 0 {
		return reg
	}
	configs := map[string]any{}
	for host, a := range auths {
		configs[host] = map[string]any{"auth": map[string]any{
			"username": a.Username, "password": a.Password, "auth": a.Auth, "identitytoken": a.IdentityToken,
		}}
	}
	reg["configs"] = configs
	return reg
}

// pathWith returns the PATH value with dir first (once).
func pathWith(path, dir string) string {
	parts := []string{dir}
	for _, p := range filepath.SplitList(path) {
		if p != dir && p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, string(filepath.ListSeparator))
}
