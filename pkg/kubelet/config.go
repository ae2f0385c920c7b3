package kubelet

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/featuregate"
	"k8s.io/kubernetes/cmd/kubelet/app/options"
	kubeletconfig "k8s.io/kubernetes/pkg/kubelet/apis/config"
	kubeletvalidation "k8s.io/kubernetes/pkg/kubelet/apis/config/validation"

	"github.com/kedge-io/kedge/pkg/args"
	"github.com/kedge-io/kedge/pkg/hostinfo"
	"github.com/kedge-io/kedge/pkg/nodemeta"
)

// DefaultRootDir is the kubelet's conventional root directory. Use it on
// real nodes: CSI node plugins, device plugins and most storage DaemonSets
// mount hard-coded host paths under /var/lib/kubelet (plugins_registry,
// plugins, pods, device-plugins), and the kubelet's device manager puts its
// registration socket in /var/lib/kubelet/device-plugins whatever the root
// directory is. A root directory under kedge's data dir only suits tests.
const DefaultRootDir = "/var/lib/kubelet"

// argFlag is the kedge flag that carries user overrides, named in errors.
const argFlag = "--kubelet-arg"

// Config describes the kubelet of one node. The caller writes every file
// it names before Start.
type Config struct {
	// CSIGuard, on a server, inits the kubelet's CSI plugin again after the
	// in-process controller-manager inits its own (see CSIGuard); nil on
	// an agent.
	CSIGuard *CSIGuard
	// NodeName is the Node's name (--hostname-override).
	NodeName string
	// NodeIP is the node's address, reported in Node.status.addresses.
	// Nil lets the kubelet pick the address of the default route.
	NodeIP net.IP
	// RootDir is the kubelet's root directory; empty means DefaultRootDir.
	RootDir string
	// Kubeconfig is the kubelet's client kubeconfig: a certificate with
	// CN=system:node:<NodeName>, O=system:nodes, as the Node authorizer and
	// the NodeRestriction admission plugin expect.
	Kubeconfig string
	// ClientCAFile verifies client certificates presented to the kubelet's
	// API (port 10250), in particular the apiserver's kubelet client.
	ClientCAFile string
	// ServingCert and ServingKey are the kubelet's HTTPS certificate, signed
	// by the cluster CA. kedge issues and renews it; the kubelet does not
	// rotate certificates itself.
	ServingCert, ServingKey string
	// ContainerRuntimeEndpoint is the CRI socket of kedge's containerd,
	// "unix:///run/…/containerd.sock" (a bare path gets unix://).
	ContainerRuntimeEndpoint string
	// ImageServiceEndpoint, when set, is the CRI image service the kubelet
	// pulls through instead of ContainerRuntimeEndpoint's (kedge's image
	// proxy, pkg/registries, for registry rewrites).
	ImageServiceEndpoint string
	// ClusterDNS are the addresses pods use as nameservers (the cluster DNS
	// Service IPs); ClusterDomain is the cluster's DNS domain.
	ClusterDNS    []net.IP
	ClusterDomain string
	// Host holds the detected host facts: cgroup version and driver.
	Host hostinfo.Host
	// NodeLabels are the labels the Node registers with. Those the kubelet
	// may not set on its own Node (nodemeta.SplitLabels:
	// node-role.kubernetes.io/control-plane …) are left out: the node-config
	// syncer sets them once the Node exists.
	NodeLabels map[string]string
	// RegisterWithTaints are the taints the Node registers with
	// (--node-taint); the syncer keeps them in sync afterwards.
	RegisterWithTaints []corev1.Taint
	// ExternalCloudProvider runs the kubelet with --cloud-provider=external:
	// kedge's cloud controller then sets the Node's addresses (a node with
	// --node-external-ip, see pkg/cloudcontroller).
	ExternalCloudProvider bool
	// ResolvConf is the resolv.conf the kubelet hands to pods with the
	// Default DNS policy and that upstream nameservers come from; empty means
	// /etc/resolv.conf. See HostResolvConf.
	ResolvConf string
	// ExtraArgs are the user's --kubelet-arg key=value values: any flag of
	// the upstream kubelet, applied over kedge's settings.
	ExtraArgs []string
	// Log receives kedge's lines about the kubelet; nil means slog.Default().
	Log *slog.Logger
}

// evictionHard are the hard eviction thresholds: the disk thresholds of k3s
// (5 % free), fit for the small disks of edge machines, where the upstream
// defaults (10 % and 15 %) evict early; memory and inode thresholds as
// upstream.
var evictionHard = map[string]string{
	"memory.available":   "100Mi",
	"nodefs.available":   "5%",
	"nodefs.inodesFree":  "5%",
	"imagefs.available":  "5%",
	"imagefs.inodesFree": "5%",
}

// evictionMinimumReclaim makes an eviction for disk free 10 % more than the
// threshold, so that the node does not hover at the threshold.
var evictionMinimumReclaim = map[string]string{
	"nodefs.available":  "10%",
	"imagefs.available": "10%",
}

// Render returns the kubelet's complete settings: kedge's defaults, then the
// user's --kubelet-arg flags, parsed with the kubelet's own flag sets, so
// that every upstream kubelet flag works. Two of those flags name files:
// config=<file> and config-dir=<dir> (drop-in *.conf files, in lexical
// order) are merged over kedge's defaults as JSON merge patches of a
// v1beta1 KubeletConfiguration, and the other flags still win over them.
// Render reads no other file and has no side effect. The flags kubelet
// registers from cadvisor (since 1.37 only housekeeping-interval) are
// process-wide and only checked here; Start applies them.
//
// Logging flags (v, vmodule, logging-format) are accepted but have no effect:
// kedge configures logging once for the whole process.
//
// Render validates the result as the kubelet will; that validation reads the
// host's cgroup version (failCgroupV1 on a cgroup v1 host is an error).
func Render(cfg Config) (*options.KubeletServer, error) {
	s, err := render(cfg)
	if err != nil {
		return nil, err
	}
	if err := validate(&s.KubeletFlags, &s.KubeletConfiguration); err != nil {
		return nil, fmt.Errorf("%s: %w", argFlag, err)
	}
	return s, nil
}

// render is Render without the validation.
func render(cfg Config) (*options.KubeletServer, error) {
	for _, req := range []struct{ name, value string }{
		{"node name", cfg.NodeName},
		{"kubeconfig", cfg.Kubeconfig},
		{"client CA file", cfg.ClientCAFile},
		{"serving certificate", cfg.ServingCert},
		{"serving key", cfg.ServingKey},
		{"container runtime endpoint", cfg.ContainerRuntimeEndpoint},
	} {
		if req.value == "" {
			return nil, fmt.Errorf("kubelet: %s is empty", req.name)
		}
	}
	// The others are the node-config syncer's (pkg/nodemeta).
	self, _ := nodemeta.SplitLabels(cfg.NodeLabels)

	kc, err := options.NewKubeletConfiguration()
	if err != nil {
		return nil, fmt.Errorf("kubelet: default configuration: %w", err)
	}
	applyDefaults(kc, cfg)
	f := options.NewKubeletFlags()
	f.KubeConfig = cfg.Kubeconfig
	f.HostnameOverride = cfg.NodeName
	if cfg.NodeIP != nil {
		f.NodeIP = cfg.NodeIP.String()
	}
	f.RootDirectory = cfg.RootDir
	if f.RootDirectory == "" {
		f.RootDirectory = DefaultRootDir
	}
	// The kubelet refuses a root directory that is not in canonical form.
	f.RootDirectory = filepath.Clean(f.RootDirectory)
	f.CertDirectory = filepath.Join(f.RootDirectory, "pki")
	f.NodeLabels = self
	kc.RegisterWithTaints = slices.Clone(cfg.RegisterWithTaints)
	if cfg.ExternalCloudProvider {
		f.CloudProvider = "external"
	}

	flags, err := args.Render(nil, cfg.ExtraArgs, argFlag)
	if err != nil {
		return nil, err
	}
	if err := parseFlags(flags, f, kc); err != nil {
		return nil, fmt.Errorf("%s: %w", argFlag, err)
	}
	if f.KubeletConfigFile != "" || f.KubeletDropinConfigDirectory != "" {
		if kc, err = mergeConfigFiles(kc, f.KubeletConfigFile, f.KubeletDropinConfigDirectory); err != nil {
			return nil, fmt.Errorf("%s: %w", argFlag, err)
		}
		// Flags win over files: parse them again into the merged
		// configuration, keeping file feature gates the flags do not name.
		gates := kc.FeatureGates
		if err := parseFlags(flags, options.NewKubeletFlags(), kc); err != nil {
			return nil, fmt.Errorf("%s: %w", argFlag, err)
		}
		for k, v := range gates {
			if _, ok := kc.FeatureGates[k]; !ok {
				if kc.FeatureGates == nil {
					kc.FeatureGates = map[string]bool{}
				}
				kc.FeatureGates[k] = v
			}
		}
	}
	return &options.KubeletServer{KubeletFlags: *f, KubeletConfiguration: *kc}, nil
}

// applyDefaults sets kedge's choices on the upstream defaults.
func applyDefaults(kc *kubeletconfig.KubeletConfiguration, cfg Config) {
	// Only the apiserver and holders of a cluster client certificate reach
	// the kubelet API, and each request is authorized by the apiserver.
	kc.Authentication.Anonymous.Enabled = false
	kc.Authentication.Webhook.Enabled = true
	kc.Authentication.X509.ClientCAFile = cfg.ClientCAFile
	kc.Authorization.Mode = kubeletconfig.KubeletAuthorizationModeWebhook
	kc.ReadOnlyPort = 0
	kc.TLSCertFile = cfg.ServingCert
	kc.TLSPrivateKeyFile = cfg.ServingKey
	// kedge issues the kubelet's certificates; no CSR-based rotation.
	kc.RotateCertificates = false
	kc.ServerTLSBootstrap = false

	kc.CgroupDriver = cfg.Host.CgroupDriver()
	if cfg.Host.CgroupV1 {
		// Kubelet 1.35+ refuses cgroup v1 unless told otherwise.
		kc.FailCgroupV1 = false
	}
	kc.CgroupsPerQOS = true
	kc.EnforceNodeAllocatable = []string{"pods"}
	kc.ProtectKernelDefaults = false
	kc.FailSwapOn = false

	kc.ContainerRuntimeEndpoint = runtimeEndpoint(cfg.ContainerRuntimeEndpoint)
	if cfg.ImageServiceEndpoint != "" {
		kc.ImageServiceEndpoint = runtimeEndpoint(cfg.ImageServiceEndpoint)
	}
	kc.SerializeImagePulls = false
	kc.EvictionHard = maps.Clone(evictionHard)
	kc.EvictionMinimumReclaim = maps.Clone(evictionMinimumReclaim)

	kc.ClusterDNS = nil
	for _, ip := range cfg.ClusterDNS {
		kc.ClusterDNS = append(kc.ClusterDNS, ip.String())
	}
	kc.ClusterDomain = strings.TrimSuffix(cfg.ClusterDomain, ".")
	if cfg.ResolvConf != "" {
		kc.ResolverConfig = cfg.ResolvConf
	}

	// No static pods: kedge runs the control plane in-process.
	kc.StaticPodPath = ""
	kc.HealthzBindAddress = "127.0.0.1"
	kc.HealthzPort = 10248
}

// runtimeEndpoint adds unix:// to a bare socket path.
func runtimeEndpoint(endpoint string) string {
	if strings.Contains(endpoint, "://") {
		return endpoint
	}
	return "unix://" + endpoint
}

// parseFlags parses "--key=value" flags into the kubelet's flags and
// configuration with the kubelet's own flag bindings. The cadvisor flags the
// kubelet registers are process-wide globals: they are accepted here without
// effect (applyGlobalFlags sets them).
func parseFlags(flags []string, f *options.KubeletFlags, kc *kubeletconfig.KubeletConfiguration) error {
	fs := newFlagSet()
	f.AddFlags(fs)
	options.AddKubeletConfigFlags(fs, kc)
	globals := pflag.NewFlagSet("globals", pflag.ContinueOnError)
	options.AddGlobalFlags(globals)
	globals.VisitAll(func(g *pflag.Flag) { fs.Var(cliflag.NoOp{}, g.Name, g.Usage) })
	return fs.Parse(flags)
}

// applyGlobalFlags sets the process-wide cadvisor flags among flags; the
// kubelet's own flags are parsed into throwaway values.
func applyGlobalFlags(flags []string) error {
	fs := newFlagSet()
	options.NewKubeletFlags().AddFlags(fs)
	kc, err := options.NewKubeletConfiguration()
	if err != nil {
		return err
	}
	options.AddKubeletConfigFlags(fs, kc)
	options.AddGlobalFlags(fs)
	return fs.Parse(flags)
}

// newFlagSet returns an empty flag set that normalizes names as the kubelet
// does (foo_bar is foo-bar) and prints nothing: the deprecation notices of
// kubelet flags point at a config file kedge does not use.
func newFlagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("kubelet", pflag.ContinueOnError)
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	fs.SetOutput(io.Discard)
	return fs
}

// validate checks the flags and configuration as the kubelet will, and that
// the configured feature gates (featureGates of a config file, or the
// feature-gates flag) agree with the process-wide gate the kubelet runs with.
func validate(f *options.KubeletFlags, kc *kubeletconfig.KubeletConfiguration) error {
	gate := utilfeature.DefaultMutableFeatureGate.DeepCopy()
	if err := gate.SetFromMap(kc.FeatureGates); err != nil {
		return fmt.Errorf("feature-gates: %w", err)
	}
	if err := checkProcessGates(kc.FeatureGates); err != nil {
		return err
	}
	if err := kubeletvalidation.ValidateKubeletConfiguration(kc, gate); err != nil {
		return err
	}
	return options.ValidateKubeletFlags(f)
}

// checkProcessGates refuses feature gates that differ from the process-wide
// gate: the kubelet does not set its own (they would change the apiserver's
// and kube-proxy's too), it runs with the one kedge's --feature-gates set.
func checkProcessGates(gates map[string]bool) error {
	for _, name := range slices.Sorted(maps.Keys(gates)) {
		have := utilfeature.DefaultFeatureGate.Enabled(featuregate.Feature(name))
		if gates[name] != have {
			return fmt.Errorf("feature-gates: %s=%t, but the process-wide gate has %s=%t: kedge runs the kubelet, kube-proxy and the control plane in one process, with one feature gate; set it with kedge's --feature-gates, not per component", name, gates[name], name, have)
		}
	}
	return nil
}
