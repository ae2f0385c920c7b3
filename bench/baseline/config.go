package baseline

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/kedge-io/kedge/pkg/embedded"
	"github.com/kedge-io/kedge/pkg/hostinfo"
	"github.com/kedge-io/kedge/pkg/kubelet"
)

// Defaults, as `kedge server` has them.
const (
	DefaultClusterCIDR   = "10.42.0.0/16"
	DefaultServiceCIDR   = "10.43.0.0/16"
	DefaultClusterDNS    = "10.43.0.10"
	DefaultClusterDomain = "cluster.local"
	DefaultHTTPSPort     = 6443
	// DefaultRunDir holds the baseline's sockets and runtime state (kedge's
	// is /run/kedge): containerd's sockets, shim sockets and runc state.
	DefaultRunDir = "/run/kedge-baseline"
	// DefaultStopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	DefaultStopTimeout = 10 * time.Second
	// RestartDelay is how long a process that exited waits before it is
	// started again (systemd's RestartSec).
	RestartDelay = time.Second
)

// Paths says where the executables and the images the baseline runs are.
type Paths struct {
	// BinDir holds the upstream executables scripts/bench-build.sh builds
	// (bench/bin): etcd, kube-apiserver, …, containerd, ctr, flanneld, coredns.
	BinDir string
	// HelperDir holds what containerd execs, as kedge embeds them (make
	// helpers → pkg/embedded/assets/bin): runc, containerd-shim-runc-v2 and
	// the CNI plugins bridge, host-local, loopback and portmap.
	HelperDir string
	// PauseImageTar is the pause image tarball (pkg/embedded/assets/images/pause.tar),
	// imported and pinned as the sandbox image embedded.PauseImage.
	PauseImageTar string
}

// RepoPaths returns the Paths of a kedge checkout at repo after
// scripts/bench-build.sh and make helpers.
func RepoPaths(repo string) Paths {
	return Paths{
		BinDir:        filepath.Join(repo, "bench", "bin"),
		HelperDir:     filepath.Join(repo, "pkg", "embedded", "assets", "bin"),
		PauseImageTar: filepath.Join(repo, "pkg", "embedded", "assets", "images", "pause.tar"),
	}
}

// Executables lists the files of BinDir the baseline runs.
var Executables = []string{
	"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
	"kubelet", "kube-proxy", "containerd", "ctr", "flanneld", "coredns",
}

// helpers lists the files of HelperDir containerd and the CNI need.
var helpers = []string{"runc", "containerd-shim-runc-v2", "bridge", "host-local", "loopback", "portmap"}

// Check says what is missing from p, naming the command that builds it.
func (p Paths) Check() error {
	for _, name := range Executables {
		if _, err := os.Stat(filepath.Join(p.BinDir, name)); err != nil {
			return fmt.Errorf("baseline: %s: %w (run scripts/bench-build.sh)", name, err)
		}
	}
	for _, name := range helpers {
		if _, err := os.Stat(filepath.Join(p.HelperDir, name)); err != nil {
			return fmt.Errorf("baseline: %s: %w (run make helpers)", name, err)
		}
	}
	if _, err := os.Stat(p.PauseImageTar); err != nil {
		return fmt.Errorf("baseline: pause image: %w (run make helpers)", err)
	}
	return nil
}

// NodeOptions are the settings of the node components, shared by a Server
// and a Node. Zero values take the defaults of `kedge server`.
type NodeOptions struct {
	// NodeName is the Node's name; empty: the hostname.
	NodeName string
	// NodeIP is the node's address; nil: the source address of the default
	// route (as kedge picks it).
	NodeIP net.IP
	// FlannelIface is flanneld's -iface; empty: the interface holding NodeIP.
	FlannelIface string
	// ClusterCIDR, ClusterDNS and ClusterDomain as kedge's flags.
	ClusterCIDR   string
	ClusterDNS    net.IP
	ClusterDomain string
	// KubeletRootDir is the kubelet's --root-dir; empty: /var/lib/kubelet,
	// as kedge.
	KubeletRootDir string
	// RunDir holds sockets and runtime state; empty: DefaultRunDir. Its
	// containerd/s path must stay within containerd's 42-byte limit for
	// shim sockets.
	RunDir string
	// Images are image tarballs imported into containerd (namespace
	// k8s.io) with ctr as soon as it serves, before the kubelet starts, as
	// kedge imports <data-dir>/agent/images.
	Images []string
	// StopTimeout bounds the wait between SIGTERM and SIGKILL; zero:
	// DefaultStopTimeout.
	StopTimeout time.Duration
}

// withDefaults fills the zero values of o.
func (o NodeOptions) withDefaults() (NodeOptions, error) {
	if o.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return o, fmt.Errorf("baseline: node name: %w", err)
		}
		o.NodeName = h
	}
	if o.NodeIP == nil {
		o.NodeIP = hostinfo.DefaultNodeIP()
		if o.NodeIP == nil {
			return o, fmt.Errorf("baseline: no node IP: give NodeIP")
		}
	}
	if o.ClusterCIDR == "" {
		o.ClusterCIDR = DefaultClusterCIDR
	}
	if o.ClusterDNS == nil {
		o.ClusterDNS = net.ParseIP(DefaultClusterDNS)
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = DefaultClusterDomain
	}
	if o.KubeletRootDir == "" {
		o.KubeletRootDir = kubelet.DefaultRootDir
	}
	if o.RunDir == "" {
		o.RunDir = DefaultRunDir
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	return o, nil
}

// ServerConfig describes a baseline server: the control plane and a node.
type ServerConfig struct {
	Paths
	// DataDir holds everything the server writes except the kubelet's
	// root dir and RunDir: certificates, kubeconfigs, configuration files,
	// etcd's and containerd's data, logs (DataDir/logs/<process>.log).
	DataDir string
	NodeOptions
	// ServiceCIDR as kedge's --service-cidr; empty: DefaultServiceCIDR.
	ServiceCIDR string
	// HTTPSPort is the apiserver's port; zero: DefaultHTTPSPort.
	HTTPSPort int
}

// NodeConfig describes a baseline node joining a running control plane (a
// kedge server --disable-agent on this host, typically).
type NodeConfig struct {
	Paths
	// DataDir holds the node's certificates, kubeconfigs, configuration
	// files, containerd's data and logs (DataDir/logs/<process>.log).
	DataDir string
	NodeOptions
	// ServerURL is the apiserver, e.g. https://10.0.0.1:6443.
	ServerURL string
	// ServerTLSDir is the server's certificate directory holding its CAs
	// and their keys (kedge: <data-dir>/server/tls, the layout of
	// pki.Generate); the node issues its own certificates from them, as
	// kedge's supervisor does for an agent.
	ServerTLSDir string
	// AdminKubeconfig is a cluster-admin kubeconfig (Kubeconfig returns it).
	AdminKubeconfig string
}

// pauseImage is the sandbox image's name, as kedge sets it.
const pauseImage = embedded.PauseImage
