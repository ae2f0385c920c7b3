package cli

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kedge-io/kedge/pkg/diskguard"
	"github.com/kedge-io/kedge/pkg/flannel"
	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/logging"
	"github.com/kedge-io/kedge/pkg/nodemeta"
	"github.com/kedge-io/kedge/pkg/server"
	"github.com/kedge-io/kedge/pkg/servicelb"
)

// serverFlags holds the raw flag values of `kedge server`.
type serverFlags struct {
	config         string
	dataDir        string
	bindAddress    string
	httpsPort      int
	advertiseAddr  string
	nodeIP         string
	nodeName       string
	tlsSANs        []string
	clusterCIDR    string
	serviceCIDR    string
	clusterDNS     string
	clusterDomain  string
	kubeconfig     string
	kubeconfigMode string
	apiserverArgs  []string
	cmArgs         []string
	schedulerArgs  []string
	etcdArgs       []string
	etcdMinFree    bytesFlag
	snapshots      snapshotFlags
	kubeletArgs    []string
	kubeProxyArgs  []string
	nodeLabels     []string
	nodeTaints     []string
	externalIPs    []string
	disable        []string
	localStorage   string
	serviceLBPools []string
	featureGates   featureGates
	flannelBackend string
	flannelIface   string
	registries     registriesFlag
	token          string
	tokenFile      string
	agentToken     string
	server         string
	clusterInit    bool
	secretsEncrypt bool
	disableAgent   bool
	debug          bool
	logFormat      string
	certValidity   time.Duration // hidden: tests
}

func (f *serverFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&f.config, "config", "c", DefaultConfigFile, "config file: YAML whose keys are these flags' names (plus <file>.d/*.yaml)")
	fs.StringVarP(&f.dataDir, "data-dir", "d", "/var/lib/kedge", "directory of kedge's state")
	fs.StringVar(&f.bindAddress, "bind-address", "0.0.0.0", "address the apiserver listens on")
	fs.IntVar(&f.httpsPort, "https-listen-port", 6443, "port of the apiserver (and the join API)")
	fs.StringVar(&f.advertiseAddr, "advertise-address", "", "address the apiserver advertises to the cluster (default: --node-ip)")
	fs.StringVar(&f.nodeIP, "node-ip", "", "IP address of this node (default: the address of the default route's interface)")
	fs.StringVar(&f.nodeName, "node-name", "", "name of this node (default: the hostname)")
	fs.StringSliceVar(&f.tlsSANs, "tls-san", nil, "extra host name or IP in the apiserver's certificate (repeatable)")
	fs.StringVar(&f.clusterCIDR, "cluster-cidr", "10.42.0.0/16", "pod network CIDR")
	fs.StringVar(&f.serviceCIDR, "service-cidr", "10.43.0.0/16", "service ClusterIP CIDR")
	fs.StringVar(&f.clusterDNS, "cluster-dns", "10.43.0.10", "ClusterIP of the cluster DNS service (inside --service-cidr)")
	fs.StringVar(&f.clusterDomain, "cluster-domain", "cluster.local", "cluster DNS domain")
	fs.StringVar(&f.kubeconfig, "write-kubeconfig", "/etc/kedge/kedge.yaml", "where to write the admin kubeconfig")
	fs.StringVar(&f.kubeconfigMode, "write-kubeconfig-mode", "0600", "file mode of the admin kubeconfig (octal)")
	fs.StringArrayVar(&f.apiserverArgs, "kube-apiserver-arg", nil, "extra kube-apiserver flag as key=value (repeatable)")
	fs.StringArrayVar(&f.cmArgs, "kube-controller-manager-arg", nil, "extra kube-controller-manager flag as key=value (repeatable)")
	fs.StringArrayVar(&f.schedulerArgs, "kube-scheduler-arg", nil, "extra kube-scheduler flag as key=value (repeatable)")
	fs.StringArrayVar(&f.etcdArgs, "etcd-arg", nil, "extra etcd setting as key=value, with etcd's config file keys (repeatable)")
	f.etcdMinFree = diskguard.DefaultMinFree
	fs.Var(&f.etcdMinFree, "etcd-min-free", "free space the data dir's filesystem must keep: under it etcd refuses writes (reads go on) until space is freed; 0 turns the guard off")
	f.snapshots.register(fs)
	fs.StringArrayVar(&f.kubeletArgs, "kubelet-arg", nil, "extra kubelet flag as key=value (repeatable)")
	fs.StringArrayVar(&f.kubeProxyArgs, "kube-proxy-arg", nil, "extra kube-proxy flag as key=value (repeatable)")
	registerNodeMeta(fs, &f.nodeLabels, &f.nodeTaints, &f.externalIPs)
	registerLocalStorage(fs, &f.localStorage)
	fs.StringArrayVar(&f.serviceLBPools, "service-lb-pool", nil, "address pool of LoadBalancer Services as NAME=FIRST-LAST or NAME=CIDR (repeatable): a Service gets an address from the pool its annotation "+servicelb.PoolAnnotation+" names, else from the pool named "+servicelb.DefaultPool+" or the first (a pool name may have one IPv4 and one IPv6 range: a dual-stack Service gets one of each); one node answers ARP or NDP for it. Without a pool, Services get the nodes' addresses")
	fs.StringSliceVar(&f.disable, "disable", nil, "built-in add-on not to run, and to remove if it ran ("+strings.Join(server.DisableNames(), ", ")+"; repeatable or comma-separated); every server of a cluster needs the same list. A user manifest in <data-dir>/server/manifests is skipped with a <file>.skip beside it")
	fs.Var(&f.featureGates, "feature-gates", featureGatesUsage)
	fs.StringVar(&f.flannelBackend, "flannel-backend", string(flannel.VXLAN), "pod network between nodes: vxlan, host-gw (nodes on one L2 segment), or none (no pod network: bring your own CNI)")
	fs.StringVar(&f.flannelIface, "flannel-iface", "", "interface whose address carries the pod traffic between nodes (default: the interface holding --node-ip)")
	f.registries.register(fs)
	fs.StringVarP(&f.token, "token", "t", "", "the cluster's join secret (first server: default generated; written with the CA's hash to <data-dir>/server/token; default $"+tokenEnv+")")
	registerTokenFile(fs, &f.tokenFile)
	fs.StringVar(&f.agentToken, "agent-token", "", "the secret that joins agents only (default generated; written with the CA's hash to <data-dir>/server/agent-token): hand it to workers instead of --token, which also joins servers")
	fs.StringVarP(&f.server, "server", "s", "", "URL of a running server (https://host:6443) to join as another server; needs --token")
	fs.BoolVar(&f.clusterInit, "cluster-init", false, "start a new cluster with this server as its first etcd member (the default without --server)")
	fs.BoolVar(&f.secretsEncrypt, "secrets-encryption", true, "encrypt Secrets at rest in etcd (a new cluster only; key in <data-dir>/server/cred/encryption-config.json)")
	fs.BoolVar(&f.disableAgent, "disable-agent", false, "run only the control plane, no node components (containerd, kubelet, kube-proxy, CoreDNS)")
	fs.BoolVar(&f.debug, "debug", false, "verbose logs, including the upstream components' info lines")
	fs.StringVar(&f.logFormat, "log-format", string(logging.Text), "log line format: text (key=value) or json")
	fs.DurationVar(&f.certValidity, "cert-validity", 0, "validity of new leaf certificates (tests: renewal within seconds); 0: one year")
	_ = fs.MarkHidden("cert-validity")
}

// serverConfig validates the flags and builds the server's configuration.
// Every error names the flag at fault.
func (f *serverFlags) serverConfig(exec time.Time) (server.Config, error) {
	token, err := readTokenFile(tokenFromEnv(f.token, f.tokenFile), f.tokenFile)
	if err != nil {
		return server.Config{}, err
	}
	f.token = token
	c := server.Config{
		HTTPSPort:             f.httpsPort,
		TLSSANs:               f.tlsSANs,
		ClusterDomain:         strings.TrimSuffix(f.clusterDomain, "."),
		APIServerArgs:         f.apiserverArgs,
		ControllerManagerArgs: f.cmArgs,
		SchedulerArgs:         f.schedulerArgs,
		EtcdArgs:              f.etcdArgs,
		EtcdMinFree:           uint64(f.etcdMinFree),
		KubeletArgs:           f.kubeletArgs,
		KubeProxyArgs:         f.kubeProxyArgs,
		FlannelIface:          f.flannelIface,
		Token:                 f.token,
		AgentToken:            f.agentToken,
		JoinURL:               f.server,
		SecretsEncryption:     f.secretsEncrypt,
		DisableAgent:          f.disableAgent,
		Debug:                 f.debug,
		Exec:                  exec,
		CertValidity:          f.certValidity,
	}
	if f.certValidity != 0 && f.certValidity < 10*time.Second {
		return c, fmt.Errorf("--cert-validity %s: must be 0 (one year) or at least 10s", f.certValidity)
	}
	if c.Registries, err = f.registries.load(); err != nil {
		return c, err
	}
	if c.LogFormat, err = logging.ParseFormat(f.logFormat); err != nil {
		return c, err
	}
	if f.dataDir == "" {
		return c, fmt.Errorf("--data-dir: must not be empty")
	}
	if c.DataDir, err = filepath.Abs(f.dataDir); err != nil {
		return c, fmt.Errorf("--data-dir %q: %w", f.dataDir, err)
	}
	if c.LocalStoragePath, err = parseLocalStoragePath(f.localStorage, c.DataDir); err != nil {
		return c, err
	}
	if c.BindAddress = net.ParseIP(f.bindAddress); c.BindAddress == nil {
		return c, fmt.Errorf("--bind-address %q: not an IP address", f.bindAddress)
	}
	if f.httpsPort < 1 || f.httpsPort > 65535 {
		return c, fmt.Errorf("--https-listen-port %d: must be between 1 and 65535", f.httpsPort)
	}
	if c.NodeIP, err = parseNodeIP(f.nodeIP); err != nil {
		return c, err
	}
	c.AdvertiseIP = c.NodeIP
	if f.advertiseAddr != "" {
		if c.AdvertiseIP = net.ParseIP(f.advertiseAddr); c.AdvertiseIP == nil {
			return c, fmt.Errorf("--advertise-address %q: not an IP address", f.advertiseAddr)
		}
	}
	if c.AdvertiseIP.IsLoopback() || c.AdvertiseIP.IsUnspecified() {
		flag := "--node-ip"
		if f.advertiseAddr != "" {
			flag = "--advertise-address"
		}
		return c, fmt.Errorf("%s %s: the apiserver must advertise an address other nodes and pods can reach, not loopback or unspecified (set --node-ip)", flag, c.AdvertiseIP)
	}
	if c.NodeName, err = parseNodeName(f.nodeName); err != nil {
		return c, err
	}
	if c.NodeMeta, err = nodemeta.Parse(f.nodeLabels, f.nodeTaints); err != nil {
		return c, err
	}
	if c.NodeMeta.ExternalIPs, err = nodemeta.ParseExternalIPs(f.externalIPs); err != nil {
		return c, err
	}
	for _, name := range f.disable {
		if !slices.Contains(server.DisableNames(), name) {
			return c, fmt.Errorf("--disable %q: not a built-in add-on; want one of %s (to skip a manifest of <data-dir>/server/manifests, create <file>.skip beside it)", name, strings.Join(server.DisableNames(), ", "))
		}
		if !slices.Contains(c.Disable, name) {
			c.Disable = append(c.Disable, name)
		}
	}
	for _, san := range f.tlsSANs {
		if strings.TrimSpace(san) == "" || strings.ContainsAny(san, " /") {
			return c, fmt.Errorf("--tls-san %q: want a host name or an IP address", san)
		}
	}
	if _, c.ClusterCIDR, err = net.ParseCIDR(f.clusterCIDR); err != nil {
		return c, fmt.Errorf("--cluster-cidr %q: invalid CIDR", f.clusterCIDR)
	}
	if _, c.ServiceCIDR, err = net.ParseCIDR(f.serviceCIDR); err != nil {
		return c, fmt.Errorf("--service-cidr %q: invalid CIDR", f.serviceCIDR)
	}
	if c.ClusterCIDR.Contains(c.ServiceCIDR.IP) || c.ServiceCIDR.Contains(c.ClusterCIDR.IP) {
		return c, fmt.Errorf("--cluster-cidr %s and --service-cidr %s overlap", c.ClusterCIDR, c.ServiceCIDR)
	}
	if c.ServiceLBPools, err = servicelb.ParsePools(f.serviceLBPools); err != nil {
		return c, err
	}
	if err := servicelb.CheckOverlap(c.ServiceLBPools, "--cluster-cidr", c.ClusterCIDR); err != nil {
		return c, err
	}
	if err := servicelb.CheckOverlap(c.ServiceLBPools, "--service-cidr", c.ServiceCIDR); err != nil {
		return c, err
	}
	if ones, bits := c.ClusterCIDR.Mask.Size(); bits == 32 && ones > 24 {
		return c, fmt.Errorf("--cluster-cidr %s: too small, each node gets a /24 (use a /24 or larger)", c.ClusterCIDR)
	}
	if c.FlannelBackend, err = flannel.ParseBackend(f.flannelBackend); err != nil {
		return c, fmt.Errorf("--flannel-backend: %w", err)
	}
	if f.flannelIface != "" {
		// The interface holding --node-ip, the default, is checked before the server starts (see server.preflight).
		if _, err := net.InterfaceByName(f.flannelIface); err != nil {
			return c, fmt.Errorf("--flannel-iface %q: no such network interface on this host", f.flannelIface)
		}
	}
	if c.ClusterDNS = net.ParseIP(f.clusterDNS); c.ClusterDNS == nil {
		return c, fmt.Errorf("--cluster-dns %q: not an IP address", f.clusterDNS)
	}
	if !c.ServiceCIDR.Contains(c.ClusterDNS) {
		return c, fmt.Errorf("--cluster-dns %s: not inside --service-cidr %s", c.ClusterDNS, c.ServiceCIDR)
	}
	if errs := validation.IsDNS1123Subdomain(c.ClusterDomain); len(errs) > 0 {
		return c, fmt.Errorf("--cluster-domain %q: %s", f.clusterDomain, strings.Join(errs, "; "))
	}
	if f.kubeconfig == "" {
		return c, fmt.Errorf("--write-kubeconfig: must not be empty")
	}
	if c.Kubeconfig, err = filepath.Abs(f.kubeconfig); err != nil {
		return c, fmt.Errorf("--write-kubeconfig %q: %w", f.kubeconfig, err)
	}
	mode, err := strconv.ParseUint(f.kubeconfigMode, 8, 32)
	if err != nil || mode > 0o777 {
		return c, fmt.Errorf("--write-kubeconfig-mode %q: want an octal file mode such as 0600", f.kubeconfigMode)
	}
	c.KubeconfigMode = os.FileMode(mode)
	if f.token != "" {
		if _, err := join.Parse(f.token); err != nil {
			return c, err
		}
	}
	if f.server != "" {
		if f.clusterInit {
			return c, fmt.Errorf("--cluster-init and --server: give one (a new cluster, or join the server's)")
		}
		u, err := url.Parse(f.server)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return c, fmt.Errorf("--server %q: want an https URL such as https://10.0.0.1:6443", f.server)
		}
		if f.token == "" {
			return c, fmt.Errorf("--server: needs --token (the cluster's token, from <data-dir>/server/token on that server)")
		}
	}
	if err := f.snapshots.apply(&c); err != nil {
		return c, err
	}
	if err := checkKeyValues(map[string][]string{
		"--kube-apiserver-arg": f.apiserverArgs, "--kube-controller-manager-arg": f.cmArgs,
		"--kube-scheduler-arg": f.schedulerArgs, "--etcd-arg": f.etcdArgs,
		"--kubelet-arg": f.kubeletArgs, "--kube-proxy-arg": f.kubeProxyArgs,
	}); err != nil {
		return c, err
	}
	// Every component but etcd reads the process-wide feature gate.
	if err := f.featureGates.checkComponentGates(map[string][]string{
		"--kube-apiserver-arg": f.apiserverArgs, "--kube-controller-manager-arg": f.cmArgs,
		"--kube-scheduler-arg": f.schedulerArgs, "--kubelet-arg": f.kubeletArgs, "--kube-proxy-arg": f.kubeProxyArgs,
	}); err != nil {
		return c, err
	}
	return c, nil
}

func newServerCommand(exec time.Time, run func(server.Config, bool) error) *cobra.Command {
	f := &serverFlags{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a server node: embedded etcd, apiserver, controller-manager, scheduler",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyConfigFile(cmd.Flags(), f.config, cmd.Flags().Changed("config")); err != nil {
				return err
			}
			c, err := f.serverConfig(exec)
			if err != nil {
				return err
			}
			// Once for the process, before any component starts.
			if err := f.featureGates.apply(); err != nil {
				return err
			}
			return run(c, f.debug)
		},
	}
	f.register(cmd.Flags())
	return cmd
}
