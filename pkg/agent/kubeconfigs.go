package agent

import (
	"log/slog"
	"path/filepath"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kedge-io/kedge/pkg/apicache"
	"github.com/kedge-io/kedge/pkg/pki"
)

// WriteKubeconfigs writes the kubeconfigs of the kubelet (flannel uses it
// too), kube-proxy and CoreDNS under <data-dir>/agent/etc, with the node's certificates and apiserver as the
// server URL, and records their paths in cfg.
func WriteKubeconfigs(cfg *Config, apiserver string) error {
	etc := filepath.Join(cfg.Dir(), "etc")
	cfg.KubeletKubeconfig = filepath.Join(etc, "kubelet.kubeconfig")
	cfg.KubeProxyKubeconfig = filepath.Join(etc, "kube-proxy.kubeconfig")
	cfg.CoreDNSKubeconfig = filepath.Join(etc, "coredns.kubeconfig")
	nb := cfg.Certs
	for path, cred := range map[string][2]string{
		cfg.KubeletKubeconfig:   {nb.KubeletClientCert, nb.KubeletClientKey},
		cfg.KubeProxyKubeconfig: {nb.KubeProxyCert, nb.KubeProxyKey},
		cfg.CoreDNSKubeconfig:   {nb.CoreDNSCert, nb.CoreDNSKey},
	} {
		// The components read renewed certificates from the files.
		o := pki.KubeconfigOptions{Server: apiserver, CAFile: nb.ServerCA, CertFile: cred[0], KeyFile: cred[1], User: "node", ReferenceFiles: true}
		if err := pki.WriteKubeconfig(path, 0o600, o); err != nil {
			return err
		}
	}
	return nil
}

// kubeletClient returns a factory of API clients with the kubelet's
// kubeconfig (WriteKubeconfigs wrote it).
func kubeletClient(cfg Config) func() (kubernetes.Interface, error) {
	return func() (kubernetes.Interface, error) {
		rest, err := clientcmd.BuildConfigFromFlags("", cfg.KubeletKubeconfig)
		if err != nil {
			return nil, err
		}
		return kubernetes.NewForConfig(rest)
	}
}

// newKubeletCache returns the kubelet's API cache (pkg/apicache) in front
// of the load balancer at upstream, its state under <data-dir>/agent/apicache.
func newKubeletCache(node Config, upstream string, log *slog.Logger) *apicache.Cache {
	nb := node.Certs
	return apicache.New(apicache.Config{
		Listen: apicache.Address, Upstream: upstream, Dir: filepath.Join(node.Dir(), "apicache"), NodeName: node.NodeName,
		ClientCert: nb.KubeletClientCert, ClientKey: nb.KubeletClientKey, ServerCA: nb.ServerCA, ClientCA: nb.ClientCA,
		Log: log.With("component", "kubelet-apicache"),
	})
}

// writeKubeletKubeconfig points the kubelet's kubeconfig (flannel's too)
// at its API cache, which it trusts by the cache's own CA.
func writeKubeletKubeconfig(node Config, cache *apicache.Cache) error {
	if err := cache.EnsureServingCert(); err != nil {
		return err
	}
	nb := node.Certs
	return pki.WriteKubeconfig(node.KubeletKubeconfig, 0o600, pki.KubeconfigOptions{Server: cache.URL(), CAFile: cache.CAFile(),
		CertFile: nb.KubeletClientCert, KeyFile: nb.KubeletClientKey, User: "node", ReferenceFiles: true})
}
