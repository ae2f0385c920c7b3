package pki

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubeconfigName is the name of the cluster and the context in every
// kubeconfig WriteKubeconfig writes.
const kubeconfigName = "default"

// KubeconfigOptions describes one kubeconfig file.
type KubeconfigOptions struct {
	// Server is the apiserver URL, e.g. https://127.0.0.1:6443. Required.
	Server string
	// CAFile is the PEM file of the CA that signed the server certificate.
	// Its content is embedded into the kubeconfig. Required.
	CAFile string
	// CertFile is the PEM client certificate, embedded into the kubeconfig.
	// CertFile and KeyFile are given together or not at all.
	CertFile string
	// KeyFile is the PEM private key of CertFile, embedded into the
	// kubeconfig.
	KeyFile string
	// User is the user name in the file, e.g. "default". Empty means
	// "default".
	User string
	// ReferenceFiles writes the paths of CAFile, CertFile and KeyFile into
	// the kubeconfig instead of their content. client-go then reads the
	// certificate and key again for new connections (at most once a
	// second) and closes its connections when they changed (within five
	// minutes): a renewed certificate is used without a restart. The
	// in-process components' kubeconfigs use it; a kubeconfig handed to
	// users embeds the data.
	ReferenceFiles bool
}

// WriteKubeconfig writes a kubeconfig with cluster and context "default" to
// path with the given mode. The CA, certificate and key are embedded as data.
// The file is replaced atomically (temporary file and rename); missing parent
// directories are created with mode 0700.
func WriteKubeconfig(path string, mode os.FileMode, o KubeconfigOptions) error {
	if o.Server == "" {
		return fmt.Errorf("pki: kubeconfig %s: server URL is required", path)
	}
	if u, err := url.Parse(o.Server); err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("pki: kubeconfig %s: invalid server URL %q", path, o.Server)
	}
	if o.CAFile == "" {
		return fmt.Errorf("pki: kubeconfig %s: CA file is required", path)
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return fmt.Errorf("pki: kubeconfig %s: certificate and key files go together", path)
	}
	user := o.User
	if user == "" {
		user = kubeconfigName
	}

	caData, err := os.ReadFile(o.CAFile)
	if err != nil {
		return fmt.Errorf("pki: read %s: %w", o.CAFile, err)
	}
	if _, err := parseCert(caData); err != nil {
		return fmt.Errorf("pki: parse %s: %w", o.CAFile, err)
	}
	auth := &clientcmdapi.AuthInfo{}
	if o.CertFile != "" {
		if auth.ClientCertificateData, auth.ClientKeyData, err = readKeyPair(o.CertFile, o.KeyFile); err != nil {
			return err
		}
	}
	cluster := &clientcmdapi.Cluster{Server: o.Server, CertificateAuthorityData: caData}
	if o.ReferenceFiles {
		if cluster.CertificateAuthority, err = filepath.Abs(o.CAFile); err != nil {
			return fmt.Errorf("pki: kubeconfig %s: %w", path, err)
		}
		cluster.CertificateAuthorityData = nil
		if o.CertFile != "" {
			if auth.ClientCertificate, err = filepath.Abs(o.CertFile); err != nil {
				return fmt.Errorf("pki: kubeconfig %s: %w", path, err)
			}
			if auth.ClientKey, err = filepath.Abs(o.KeyFile); err != nil {
				return fmt.Errorf("pki: kubeconfig %s: %w", path, err)
			}
			auth.ClientCertificateData, auth.ClientKeyData = nil, nil
		}
	}

	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[kubeconfigName] = cluster
	cfg.AuthInfos[user] = auth
	cfg.Contexts[kubeconfigName] = &clientcmdapi.Context{Cluster: kubeconfigName, AuthInfo: user}
	cfg.CurrentContext = kubeconfigName
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("pki: encode %s: %w", path, err)
	}
	return WriteFileAtomic(path, data, mode)
}

// readKeyPair reads a PEM certificate and key and checks that they match.
func readKeyPair(certFile, keyFile string) (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(certFile); err != nil {
		return nil, nil, fmt.Errorf("pki: read %s: %w", certFile, err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: parse %s: %w", certFile, err)
	}
	if keyPEM, err = os.ReadFile(keyFile); err != nil {
		return nil, nil, fmt.Errorf("pki: read %s: %w", keyFile, err)
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: parse %s: %w", keyFile, err)
	}
	if !publicKeyMatches(cert, key) {
		return nil, nil, fmt.Errorf("pki: %s does not match %s", keyFile, certFile)
	}
	return certPEM, keyPEM, nil
}
