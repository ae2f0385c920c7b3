package cli

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kedge-io/kedge/pkg/agent"
	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/logging"
	"github.com/kedge-io/kedge/pkg/nodemeta"
	"github.com/kedge-io/kedge/pkg/version"
)

// agentFlags holds the raw flag values of `kedge agent`.
type agentFlags struct {
	config        string
	server        string
	token         string
	tokenFile     string
	dataDir       string
	nodeIP        string
	nodeName      string
	flannelIface  string
	kubeletArgs   []string
	kubeProxyArgs []string
	nodeLabels    []string
	nodeTaints    []string
	externalIPs   []string
	localStorage  string
	featureGates  featureGates
	debug         bool
	logFormat     string
	registries    registriesFlag
}

func (f *agentFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&f.config, "config", "c", DefaultConfigFile, "config file: YAML whose keys are these flags' names (plus <file>.d/*.yaml)")
	fs.StringVarP(&f.server, "server", "s", os.Getenv(serverEnv), "URL of a kedge server to join, e.g. https://10.0.0.1:6443 (required; default $"+serverEnv+")")
	fs.StringVarP(&f.token, "token", "t", "", "the cluster's join token: the first server's <data-dir>/server/agent-token (required; default $"+tokenEnv+", or see --token-file)")
	registerTokenFile(fs, &f.tokenFile)
	fs.StringVarP(&f.dataDir, "data-dir", "d", "/var/lib/kedge", "directory of kedge's state")
	fs.StringVar(&f.nodeIP, "node-ip", "", "IP address of this node (default: the address of the default route's interface)")
	fs.StringVar(&f.nodeName, "node-name", "", "name of this node (default: the hostname)")
	fs.StringVar(&f.flannelIface, "flannel-iface", "", "interface whose address carries the pod traffic between nodes (default: the interface holding --node-ip)")
	fs.StringArrayVar(&f.kubeletArgs, "kubelet-arg", nil, "extra kubelet flag as key=value (repeatable)")
	fs.StringArrayVar(&f.kubeProxyArgs, "kube-proxy-arg", nil, "extra kube-proxy flag as key=value (repeatable)")
	registerNodeMeta(fs, &f.nodeLabels, &f.nodeTaints, &f.externalIPs)
	registerLocalStorage(fs, &f.localStorage)
	fs.Var(&f.featureGates, "feature-gates", featureGatesUsage)
	fs.BoolVar(&f.debug, "debug", false, "verbose logs, including the upstream components' info lines")
	fs.StringVar(&f.logFormat, "log-format", string(logging.Text), "log line format: text (key=value) or json")
	f.registries.register(fs)
}

// agentConfig validates the flags; every error names the flag at fault.
func (f *agentFlags) agentConfig() (agent.Config, error) {
	c := agent.Config{KubeletArgs: f.kubeletArgs, KubeProxyArgs: f.kubeProxyArgs, FlannelIface: f.flannelIface, Debug: f.debug}
	u, err := url.Parse(f.server)
	if f.server == "" || err != nil || u.Scheme != "https" || u.Host == "" {
		return c, fmt.Errorf("--server %q: want the https URL of a kedge server, e.g. https://10.0.0.1:6443", f.server)
	}
	token, err := readTokenFile(tokenFromEnv(f.token, f.tokenFile), f.tokenFile)
	if err != nil {
		return c, err
	}
	f.token = token
	if f.token == "" {
		return c, fmt.Errorf("--token or --token-file: required (the first server writes the token to <data-dir>/server/token)")
	}
	if _, err := join.Parse(f.token); err != nil {
		return c, err
	}
	if c.DataDir, err = filepath.Abs(f.dataDir); err != nil || f.dataDir == "" {
		return c, fmt.Errorf("--data-dir %q: not a usable path", f.dataDir)
	}
	if c.LocalStorage, err = parseLocalStoragePath(f.localStorage, c.DataDir); err != nil {
		return c, err
	}
	if c.Registries, err = f.registries.load(); err != nil {
		return c, err
	}
	if c.NodeIP, err = parseNodeIP(f.nodeIP); err != nil {
		return c, err
	}
	if c.NodeIP.IsLoopback() || c.NodeIP.IsUnspecified() {
		return c, fmt.Errorf("--node-ip %s: other nodes must reach this address; not loopback or unspecified", c.NodeIP)
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
	if err := nodemeta.CheckAgentLabels(c.NodeMeta); err != nil {
		return c, err
	}
	args := map[string][]string{"--kubelet-arg": f.kubeletArgs, "--kube-proxy-arg": f.kubeProxyArgs}
	if err := checkKeyValues(args); err != nil {
		return c, err
	}
	return c, f.featureGates.checkComponentGates(args)
}

func newAgentCommand() *cobra.Command {
	f := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a worker node that joins a kedge server: containerd, kubelet, kube-proxy, flannel, CoreDNS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyConfigFile(cmd.Flags(), f.config, cmd.Flags().Changed("config")); err != nil {
				return err
			}
			node, err := f.agentConfig()
			if err != nil {
				return err
			}
			format, err := logging.ParseFormat(f.logFormat)
			if err != nil {
				return err
			}
			log, flush := logging.SetupProcess(f.debug, format)
			defer flush()
			// Once for the process, before any component starts.
			if err := f.featureGates.apply(); err != nil {
				return err
			}
			log.Info("starting kedge agent", "version", version.String(), "node", node.NodeName, "node_ip", node.NodeIP, "server", f.server)
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return agent.Run(ctx, node, strings.TrimSuffix(f.server, "/"), f.token, log)
		},
	}
	f.register(cmd.Flags())
	return cmd
}
