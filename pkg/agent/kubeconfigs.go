package agent

import (
	"path/filepath"

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
		o := pki.KubeconfigOptions{Server: apiserver, CAFile: nb.ServerCA, CertFile: cred[0], KeyFile: cred[1], User: "node"}
		if err := pki.WriteKubeconfig(path, 0o600, o); err != nil {
			return err
		}
	}
	return nil
}
