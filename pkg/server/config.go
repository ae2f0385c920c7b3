package server

import (
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/kedge-io/kedge/pkg/etcd"
	"github.com/kedge-io/kedge/pkg/flannel"
	"github.com/kedge-io/kedge/pkg/localstorage"
	"github.com/kedge-io/kedge/pkg/logging"
	"github.com/kedge-io/kedge/pkg/netpol"
	"github.com/kedge-io/kedge/pkg/nodemeta"
	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/registries"
	"github.com/kedge-io/kedge/pkg/servicelb"
)

// Config is everything a server node needs to know, as the user set it
// (flags and config file, validated by package cli).
type Config struct {
	DataDir        string // --data-dir, absolute
	NodeName       string // --node-name
	NodeIP         net.IP // --node-ip
	AdvertiseIP    net.IP // --advertise-address (defaults to NodeIP)
	BindAddress    net.IP // --bind-address
	HTTPSPort      int    // --https-listen-port
	TLSSANs        []string
	ClusterCIDR    *net.IPNet
	ServiceCIDR    *net.IPNet
	ClusterDNS     net.IP
	ClusterDomain  string
	Kubeconfig     string      // --write-kubeconfig
	KubeconfigMode os.FileMode // --write-kubeconfig-mode

	APIServerArgs         []string // --kube-apiserver-arg
	ControllerManagerArgs []string // --kube-controller-manager-arg
	SchedulerArgs         []string // --kube-scheduler-arg
	EtcdArgs              []string // --etcd-arg
	// EtcdMinFree is --etcd-min-free: the bytes free in the data dir's
	// filesystem under which etcd stops taking writes; 0: no guard.
	EtcdMinFree uint64
	// Disable are the built-in add-ons not to run (--disable; see
	// DisableNames).
	Disable []string
	// ServiceLBPools are --service-lb-pool: the addresses LoadBalancer
	// Services get (none: the nodes' addresses).
	ServiceLBPools []servicelb.Pool
	// LogFormat is --log-format (the process's logger is set up with it).
	LogFormat logging.Format
	// LocalStoragePath is --default-local-storage-path: where this node's
	// local-path volumes live (default <data-dir>/storage).
	LocalStoragePath string
	// NodeMeta are --node-label and --node-taint.
	NodeMeta      nodemeta.Spec
	KubeletArgs   []string // --kubelet-arg
	KubeProxyArgs []string // --kube-proxy-arg

	FlannelBackend flannel.Backend // --flannel-backend; None: no pod network
	FlannelIface   string          // --flannel-iface; empty: the interface holding NodeIP

	// Token is --token: the cluster's join secret, or a full token whose CA
	// hash must then match this cluster's CA. Empty: generated on first start.
	Token string
	// AgentToken is --agent-token: the secret (or full token) that joins
	// agents only. Empty: generated on first start, or the cluster's, got
	// when this server joined.
	AgentToken string
	// JoinURL is --server: a running server whose cluster this one joins
	// (etcd learner, then voting member). Empty: a new cluster (--cluster-init).
	JoinURL string

	// EtcdSnapshots are the scheduled snapshots' settings.
	EtcdSnapshots EtcdSnapshots
	// ClusterReset (--cluster-reset) makes the local etcd member a new
	// single-member cluster with its data, then returns.
	ClusterReset bool
	// ClusterResetRestorePath (--cluster-reset-restore-path) restores a
	// snapshot as a new single-member cluster, then returns.
	ClusterResetRestorePath string
	// EtcdAutoRestore (--etcd-auto-restore) restores the newest local
	// snapshot when etcd's data is damaged, instead of refusing to start.
	EtcdAutoRestore bool
	// SecretsEncryption is --secrets-encryption: a new cluster encrypts
	// Secrets at rest (default true).
	SecretsEncryption bool
	// CertValidity is the hidden --cert-validity: how long new leaf
	// certificates are valid (tests renew within seconds); 0: one year.
	CertValidity time.Duration

	DisableAgent bool
	Debug        bool
	// Registries are the node's mirrors and registry credentials
	// (--private-registry), for its containerd.
	Registries registries.Registries
	// Exec is when the process started, for the "ready after" log line.
	Exec time.Time
}

// Paths of the server's state under the data dir.
func (c Config) serverDir() string { return filepath.Join(c.DataDir, "server") }
func (c Config) tlsDir() string    { return filepath.Join(c.serverDir(), "tls") }
func (c Config) dbDir() string     { return filepath.Join(c.serverDir(), "db") }
func (c Config) credDir() string   { return filepath.Join(c.serverDir(), "cred") }

// adminKubeconfig is the server's own admin kubeconfig (--write-kubeconfig
// gets a copy).
func (c Config) adminKubeconfig() string { return filepath.Join(c.credDir(), "admin.kubeconfig") }

// initialClusterFile keeps the etcd member list a joining server got, until
// its etcd has a data dir.
func (c Config) initialClusterFile() string {
	return filepath.Join(c.serverDir(), "etcd-initial-cluster")
}

// TokenFile is where a server keeps the cluster's join token (servers and
// agents).
func (c Config) TokenFile() string { return filepath.Join(c.serverDir(), "token") }

// AgentTokenFile is where a server keeps the agent token (agents only).
func (c Config) AgentTokenFile() string { return filepath.Join(c.serverDir(), "agent-token") }

// FirstServiceIP is the address of the kubernetes Service: the first IP of
// the service CIDR.
func FirstServiceIP(n *net.IPNet) net.IP {
	ip := make(net.IP, len(n.IP))
	copy(ip, n.IP.Mask(n.Mask))
	for i := len(ip) - 1; i >= 0; i-- {
		ip[i]++
		if ip[i] != 0 {
			break
		}
	}
	return ip
}

// LocalEtcdTLS are the files a client of the local etcd member on a server
// with data dir dataDir authenticates with (`kedge etcd`).
func LocalEtcdTLS(dataDir string) etcd.ClientTLS {
	b := pki.Layout(Config{DataDir: dataDir}.tlsDir())
	return etcd.ClientTLS{CA: b.EtcdServerCA, Cert: b.EtcdClientCert, Key: b.EtcdClientKey}
}

// AddonCoreDNS is the cluster DNS add-on: CoreDNS in every node's process
// and the kube-dns Service (manifests/coredns.yaml).
const AddonCoreDNS = "coredns"

// AddonCloudController is kedge's cloud controller (pkg/cloudcontroller),
// which gives Nodes their --node-external-ip addresses. Disable it to run
// another cloud controller manager.
const AddonCloudController = "cloud-controller"

// AddonServiceLB gives LoadBalancer Services addresses (pkg/servicelb):
// the allocator on servers, the ARP announcer on every node.
const AddonServiceLB = "servicelb"

// AddonNetworkPolicy enforces NetworkPolicies on every node (pkg/netpol).
const AddonNetworkPolicy = netpol.AddonName

// AddonMetricsServer is the Metrics API (pkg/metricsserver) on every
// server, with its APIService (manifests/metrics-server.yaml).
const AddonMetricsServer = "metrics-server"

// AddonLocalStorage is local-path storage (pkg/localstorage): the
// local-path StorageClass and provisioner on servers, the volumes'
// directories on every node.
const AddonLocalStorage = localstorage.Addon

// DisableNames are the built-in add-ons --disable turns off.
func DisableNames() []string {
	return []string{AddonCoreDNS, AddonCloudController, AddonServiceLB, AddonNetworkPolicy, AddonMetricsServer, AddonLocalStorage}
}
