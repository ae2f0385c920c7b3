package baseline

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/plugins/snapshots/overlay/overlayutils"
	toml "github.com/pelletier/go-toml/v2"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	kubeletconversion "k8s.io/kubernetes/pkg/kubelet/apis/config/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/kedge-io/kedge/pkg/apiserver"
	"github.com/kedge-io/kedge/pkg/containerd"
	"github.com/kedge-io/kedge/pkg/controllermanager"
	"github.com/kedge-io/kedge/pkg/coredns"
	"github.com/kedge-io/kedge/pkg/etcd"
	"github.com/kedge-io/kedge/pkg/flannel"
	"github.com/kedge-io/kedge/pkg/hostinfo"
	"github.com/kedge-io/kedge/pkg/kubelet"
	"github.com/kedge-io/kedge/pkg/kubeproxy"
	"github.com/kedge-io/kedge/pkg/nodemeta"
	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/scheduler"
)

// spec is one process to run: an executable of Paths.BinDir with its
// arguments and extra environment.
type spec struct {
	name string
	path string
	args []string
	env  []string
}

// controlPlane is what the control-plane processes are rendered from.
type controlPlane struct {
	dir         string // <data-dir>/server
	nodeName    string
	nodeIP      net.IP
	port        int
	serviceCIDR string
	clusterCIDR string
	domain      string
	certs       pki.Bundle
	binDir      string
}

func (c controlPlane) cred(name string) string { return filepath.Join(c.dir, "cred", name) }

// etcdSettings is etcd's configuration file, with the settings kedge's
// embedded etcd gets (pkg/etcd) and the log level kedge lets through.
func etcdSettings(c controlPlane) map[string]any {
	ip := c.nodeIP.String()
	peerURL := "https://" + net.JoinHostPort(ip, strconv.Itoa(etcd.PeerPort))
	clientURL := "https://" + net.JoinHostPort(ip, strconv.Itoa(etcd.ClientPort))
	listenClient := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(etcd.ClientPort))
	if !c.nodeIP.IsLoopback() {
		listenClient += "," + clientURL
	}
	return map[string]any{
		"name":                        c.nodeName,
		"data-dir":                    filepath.Join(c.dir, "db", "etcd"),
		"listen-client-urls":          listenClient,
		"advertise-client-urls":       clientURL,
		"listen-peer-urls":            peerURL,
		"initial-advertise-peer-urls": peerURL,
		"initial-cluster":             c.nodeName + "=" + peerURL,
		"initial-cluster-state":       "new",
		"listen-metrics-urls":         "http://127.0.0.1:2381",
		"log-level":                   "warn",
		"snapshot-count":              10000,
		"heartbeat-interval":          100,
		"election-timeout":            1000,
		"client-transport-security": map[string]any{
			"cert-file":        c.certs.EtcdServerCert,
			"key-file":         c.certs.EtcdServerKey,
			"trusted-ca-file":  c.certs.EtcdServerCA,
			"client-cert-auth": true,
		},
		"peer-transport-security": map[string]any{
			"cert-file":        c.certs.EtcdPeerCert,
			"key-file":         c.certs.EtcdPeerKey,
			"trusted-ca-file":  c.certs.EtcdPeerCA,
			"client-cert-auth": true,
		},
	}
}

// renderControlPlane writes etcd's configuration file and returns the
// control plane's processes in start order.
func renderControlPlane(c controlPlane) ([]spec, error) {
	etcdConf := filepath.Join(c.dir, "db", "config.yaml")
	raw, err := yaml.Marshal(etcdSettings(c))
	if err != nil {
		return nil, fmt.Errorf("baseline: etcd config: %w", err)
	}
	if err := writeFile(etcdConf, raw, 0o600); err != nil {
		return nil, err
	}
	api, err := apiserver.Args(apiserver.Config{
		BindAddress:   "0.0.0.0",
		Port:          c.port,
		AdvertiseIP:   c.nodeIP,
		ServiceCIDR:   c.serviceCIDR,
		ClusterDomain: c.domain,
		EtcdServers:   []string{"https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(etcd.ClientPort))},
		CertDir:       c.certs.Dir,
		Certs:         c.certs,
	})
	if err != nil {
		return nil, err
	}
	// As kubeadm runs them, the controller-manager and the scheduler get no
	// serving certificate (each makes a self-signed one on start), like the
	// scheduler below.
	kcmCerts := c.certs
	kcmCerts.ControllerManagerServingCert, kcmCerts.ControllerManagerServingKey = "", ""
	kcm, err := controllermanager.Args(controllermanager.Config{
		Kubeconfig:  c.cred("controller.kubeconfig"),
		ClusterCIDR: c.clusterCIDR,
		ServiceCIDR: c.serviceCIDR,
		Certs:       kcmCerts,
	})
	if err != nil {
		return nil, err
	}
	sched, err := scheduler.Args(scheduler.Config{Kubeconfig: c.cred("scheduler.kubeconfig")})
	if err != nil {
		return nil, err
	}
	bin := func(name string) string { return filepath.Join(c.binDir, name) }
	return []spec{
		{name: "etcd", path: bin("etcd"), args: []string{"--config-file=" + etcdConf}},
		{name: "kube-apiserver", path: bin("kube-apiserver"), args: api},
		{name: "kube-controller-manager", path: bin("kube-controller-manager"), args: kcm},
		{name: "kube-scheduler", path: bin("kube-scheduler"), args: sched},
	}, nil
}

// node is what the node processes are rendered from.
type node struct {
	dir   string // <data-dir>/agent
	opts  NodeOptions
	paths Paths
	host  hostinfo.Host
	certs pki.NodeBundle
	// Kubeconfigs of the node's components (agent.WriteKubeconfigs).
	kubeletKubeconfig, proxyKubeconfig, corednsKubeconfig string
	labels                                                map[string]string
}

// Node paths.
func (n node) containerdRoot() string  { return filepath.Join(n.dir, "containerd") }
func (n node) containerdState() string { return filepath.Join(n.opts.RunDir, "containerd") }
func (n node) containerdAddress() string {
	return filepath.Join(n.containerdState(), "containerd.sock")
}
func (n node) cniConfDir() string { return filepath.Join(n.dir, "etc", "cni", "net.d") }
func (n node) flannelDir() string { return filepath.Join(n.dir, "etc", "flannel") }
func (n node) subnetFile() string { return filepath.Join(n.flannelDir(), "subnet.env") }
func (n node) etcDir() string     { return filepath.Join(n.dir, "etc") }

// snapshotter picks overlayfs where it works under the containerd root, as kedge does.
func (n node) snapshotter() string {
	if err := overlayutils.Supported(filepath.Join(n.containerdRoot(), "io.containerd.snapshotter.v1."+containerd.SnapshotterOverlay)); err != nil {
		return containerd.SnapshotterNative
	}
	return containerd.SnapshotterOverlay
}

// containerdConfig renders containerd's TOML configuration with kedge's
// renderer (the same plugins, CRI and runtime settings, cgroup driver and
// restrict_oom_score_adj), logging warnings and errors as kedge does.
func containerdConfig(n node, snapshotter string) ([]byte, error) {
	conf := containerd.Render(containerd.Config{
		Root:         n.containerdRoot(),
		State:        n.containerdState(),
		Address:      n.containerdAddress(),
		BinDir:       n.paths.HelperDir,
		CNIBinDir:    n.paths.HelperDir,
		CNIConfDir:   n.cniConfDir(),
		SandboxImage: pauseImage,
		Host:         n.host,
	}, snapshotter)
	conf.Debug.Level = "warn"
	raw, err := toml.Marshal(conf)
	if err != nil {
		return nil, fmt.Errorf("baseline: containerd config: %w", err)
	}
	return raw, nil
}

// kubeletFiles renders the kubelet with kedge's kubelet.Render and returns
// its configuration file (a v1beta1 KubeletConfiguration) and the flags that
// are not part of it.
func kubeletFiles(n node, configPath string) ([]byte, []string, error) {
	s, err := kubelet.Render(kubelet.Config{
		NodeName:                 n.opts.NodeName,
		NodeIP:                   n.opts.NodeIP,
		RootDir:                  n.opts.KubeletRootDir,
		Kubeconfig:               n.kubeletKubeconfig,
		ClientCAFile:             n.certs.ClientCA,
		ServingCert:              n.certs.KubeletServingCert,
		ServingKey:               n.certs.KubeletServingKey,
		ContainerRuntimeEndpoint: n.containerdAddress(),
		ClusterDNS:               []net.IP{n.opts.ClusterDNS},
		ClusterDomain:            n.opts.ClusterDomain,
		Host:                     n.host,
		NodeLabels:               selfLabels(n.labels),
		ResolvConf:               kubelet.HostResolvConf(),
	})
	if err != nil {
		return nil, nil, err
	}
	var v kubeletv1beta1.KubeletConfiguration
	if err := kubeletconversion.Convert_config_KubeletConfiguration_To_v1beta1_KubeletConfiguration(&s.KubeletConfiguration, &v, nil); err != nil {
		return nil, nil, fmt.Errorf("baseline: kubelet config: %w", err)
	}
	v.APIVersion = kubeletv1beta1.SchemeGroupVersion.String()
	v.Kind = "KubeletConfiguration"
	raw, err := yaml.Marshal(&v)
	if err != nil {
		return nil, nil, fmt.Errorf("baseline: kubelet config: %w", err)
	}
	f := s.KubeletFlags
	flags := []string{
		"--config=" + configPath,
		"--kubeconfig=" + f.KubeConfig,
		"--hostname-override=" + f.HostnameOverride,
		"--node-ip=" + f.NodeIP,
		"--root-dir=" + f.RootDirectory,
		"--cert-dir=" + f.CertDirectory,
		// No --containerd (cadvisor's containerd endpoint, which kedge sets
		// in-process): the kubelet of 1.37 no longer registers that flag
		// and exits on it.
	}
	if len(f.NodeLabels) > 0 {
		flags = append(flags, "--node-labels="+joinLabels(f.NodeLabels))
	}
	return raw, flags, nil
}

// selfLabels keeps the labels the kubelet may set on its own Node; the
// others are set through the API (bootstrap), as kedge does.
func selfLabels(labels map[string]string) map[string]string {
	self, _ := nodemeta.SplitLabels(labels)
	return self
}

func joinLabels(labels map[string]string) string {
	out := make([]string, 0, len(labels))
	for k, v := range labels {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// renderNode writes the node's configuration files (containerd TOML,
// kubelet configuration, flannel's net-conf.json, the Corefile) and
// returns its processes in start order: containerd, kubelet, flanneld,
// kube-proxy, coredns.
func renderNode(n node) ([]spec, error) {
	etc := n.etcDir()
	conf, err := containerdConfig(n, n.snapshotter())
	if err != nil {
		return nil, err
	}
	containerdConf := filepath.Join(etc, "containerd", "config.toml")
	if err := writeFile(containerdConf, conf, 0o600); err != nil {
		return nil, err
	}
	kubeletConf := filepath.Join(etc, "kubelet", "config.yaml")
	kc, kubeletFlags, err := kubeletFiles(n, kubeletConf)
	if err != nil {
		return nil, err
	}
	if err := writeFile(kubeletConf, kc, 0o600); err != nil {
		return nil, err
	}
	netConf, err := flannel.NetConf(flannel.VXLAN, n.opts.ClusterCIDR)
	if err != nil {
		return nil, err
	}
	netConfPath := filepath.Join(n.flannelDir(), "net-conf.json")
	if err := writeFile(netConfPath, netConf, 0o644); err != nil {
		return nil, err
	}
	iface := n.opts.FlannelIface
	if iface == "" {
		iface = n.opts.NodeIP.String() // flanneld's -iface takes an address too
	}
	proxy, err := kubeproxy.Args(kubeproxy.Config{
		NodeName:    n.opts.NodeName,
		NodeIP:      n.opts.NodeIP,
		Kubeconfig:  n.proxyKubeconfig,
		ClusterCIDR: n.opts.ClusterCIDR,
	})
	if err != nil {
		return nil, err
	}
	corefile := filepath.Join(etc, "coredns", "Corefile")
	cf := coredns.Corefile(coredns.Config{
		NodeName:      n.opts.NodeName,
		NodeIP:        n.opts.NodeIP,
		ClusterDomain: n.opts.ClusterDomain,
		Kubeconfig:    n.corednsKubeconfig,
		ResolvConf:    kubelet.HostResolvConf(),
	})
	if err := writeFile(corefile, []byte(cf), 0o644); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(n.cniConfDir(), 0o755); err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	bin := func(name string) string { return filepath.Join(n.paths.BinDir, name) }
	return []spec{
		{
			name: "containerd", path: bin("containerd"), args: []string{"--config=" + containerdConf},
			// containerd finds the shim in PATH, as kedge puts its bin dir first.
			env: []string{"PATH=" + n.paths.HelperDir + ":" + os.Getenv("PATH")},
		},
		{name: "kubelet", path: bin("kubelet"), args: kubeletFlags},
		{
			name: "flanneld", path: bin("flanneld"),
			args: []string{
				"-kube-subnet-mgr",
				"-kubeconfig-file=" + n.kubeletKubeconfig,
				"-kube-annotation-prefix=" + flannel.AnnotationPrefix,
				"-net-config-path=" + netConfPath,
				"-subnet-file=" + n.subnetFile(),
				"-iface=" + iface,
				"-ip-masq",
				"-iptables-resync=5",
			},
			env: []string{"NODE_NAME=" + n.opts.NodeName},
		},
		{name: "kube-proxy", path: bin("kube-proxy"), args: proxy},
		{name: "coredns", path: bin("coredns"), args: []string{"-conf=" + corefile, "-quiet"}},
	}, nil
}

// writeFile writes data to path with mode, creating the parent directory.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	return os.Chmod(path, mode)
}
