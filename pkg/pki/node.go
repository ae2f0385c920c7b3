package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// NodeConfig says which node certificates to issue.
type NodeConfig struct {
	// Dir receives the node's files, e.g. <data-dir>/agent/tls; created 0700.
	Dir string
	// NodeName is the node's name: the kubelet client certificate is
	// CN=system:node:<NodeName>, O=system:nodes, as the Node authorizer expects.
	NodeName string
	// NodeIPs go into the kubelet serving certificate, beside NodeName,
	// localhost and 127.0.0.1.
	NodeIPs []net.IP
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Validity, Rotate and OnIssue are as in Config.
	Validity time.Duration
	Rotate   []string
	OnIssue  func(certPath, reason string)
	// PublicKeys, by certificate file name (kubelet-serving.crt, …), are
	// keys to issue those certificates for: IssueNode writes no key file
	// for them. An agent renewing keeps its keys this way (ParsePublicKey).
	PublicKeys map[string]crypto.PublicKey
}

// NodeBundle holds the absolute paths of a node's certificates.
type NodeBundle struct {
	// ServerCA verifies the apiserver; ClientCA verifies clients of the
	// kubelet (the apiserver's kubelet client certificate).
	ServerCA, ClientCA string
	// KubeletClientCert and KubeletClientKey authenticate the kubelet to
	// the apiserver.
	KubeletClientCert, KubeletClientKey string
	// KubeletServingCert and KubeletServingKey are the kubelet's HTTPS
	// certificate, signed by the cluster (server) CA.
	KubeletServingCert, KubeletServingKey string
	// KubeProxyCert and KubeProxyKey authenticate kube-proxy as
	// system:kube-proxy.
	KubeProxyCert, KubeProxyKey string
	// CoreDNSCert and CoreDNSKey authenticate the node's in-process CoreDNS
	// as system:kedge-coredns:<node> in the group system:kedge-coredns
	// (bound to the kedge:coredns roles; an admission policy limits each to
	// its own node's kube-dns EndpointSlice).
	CoreDNSCert, CoreDNSKey string
}

// IssueNode issues, or keeps while still valid, the certificates one node
// needs, signed by the CAs of ca (a Bundle from Generate). Like Generate it
// is idempotent: a second call with the same NodeConfig changes no file.
func IssueNode(ca Bundle, cfg NodeConfig) (NodeBundle, error) {
	if cfg.Dir == "" || cfg.NodeName == "" {
		return NodeBundle{}, errors.New("pki: NodeConfig.Dir and NodeName are required")
	}
	if errs := validation.IsDNS1123Subdomain(cfg.NodeName); len(errs) > 0 {
		return NodeBundle{}, fmt.Errorf("pki: node name %q: %s", cfg.NodeName, strings.Join(errs, "; "))
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return NodeBundle{}, fmt.Errorf("pki: resolve %s: %w", cfg.Dir, err)
	}
	is, err := newIssuing(cfg.Now, cfg.Validity, cfg.Rotate, cfg.OnIssue)
	if err != nil {
		return NodeBundle{}, err
	}
	is.publicKeys = cfg.PublicKeys
	now := is.now
	if err := mkdirPrivate(dir); err != nil {
		return NodeBundle{}, err
	}
	serverCA, err := readCA(ca.ServerCA, ca.ServerCAKey, now)
	if err != nil {
		return NodeBundle{}, err
	}
	clientCA, err := readCA(ca.ClientCA, ca.ClientCAKey, now)
	if err != nil {
		return NodeBundle{}, err
	}
	b := NodeLayout(dir)
	for src, dst := range map[string]string{ca.ServerCA: b.ServerCA, ca.ClientCA: b.ClientCA} {
		if err := copyIfChanged(src, dst); err != nil {
			return NodeBundle{}, err
		}
	}
	leaves := nodeLeaves(b, cfg, serverCA, clientCA)
	for _, l := range leaves {
		if err := ensureLeaf(l, is); err != nil {
			return NodeBundle{}, err
		}
	}
	return b, nil
}

// The identity of a node's CoreDNS: user CoreDNSUserPrefix + node name, in
// group CoreDNSGroup (manifests/coredns.yaml binds the group and holds the
// admission policy that keys on the name).
const (
	CoreDNSUserPrefix = "system:kedge-coredns:"
	CoreDNSGroup      = "system:kedge-coredns"
)

// nodeLeaves lists the leaves of a node.
func nodeLeaves(b NodeBundle, cfg NodeConfig, serverCA, clientCA *authority) []leafSpec {
	var serving sanSet
	serving.addDNS(cfg.NodeName)
	serving.addDNS("localhost")
	serving.addIP(net.IPv4(127, 0, 0, 1))
	for _, ip := range cfg.NodeIPs {
		serving.addIP(ip)
	}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return []leafSpec{
		{"kubelet", b.KubeletClientCert, b.KubeletClientKey, clientCA, "system:node:" + cfg.NodeName, []string{"system:nodes"}, client, sanSet{}},
		{"kubelet", b.KubeletServingCert, b.KubeletServingKey, serverCA, cfg.NodeName, nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, serving},
		{"kube-proxy", b.KubeProxyCert, b.KubeProxyKey, clientCA, "system:kube-proxy", nil, client, sanSet{}},
		{"coredns", b.CoreDNSCert, b.CoreDNSKey, clientCA, CoreDNSUserPrefix + cfg.NodeName, []string{CoreDNSGroup}, client, sanSet{}},
	}
}

// NodeDue checks a node's certificates in b (as IssueNode or an agent's
// join wrote them) without the CA keys, which an agent does not have, and
// returns, for each leaf that IssueNode would issue again, its certificate
// path and why: missing, in its renewal window, SANs changed (cfg.NodeIPs),
// not signed by the CA in b, or its service in cfg.Rotate. An empty map
// means nothing is due.
func NodeDue(b NodeBundle, cfg NodeConfig) (map[string]string, error) {
	is, err := newIssuing(cfg.Now, cfg.Validity, cfg.Rotate, nil)
	if err != nil {
		return nil, err
	}
	var cas [2]*authority
	for i, path := range []string{b.ServerCA, b.ClientCA} {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("pki: read %s: %w", path, err)
		}
		cert, err := parseCert(data)
		if err != nil {
			return nil, fmt.Errorf("pki: parse %s: %w", path, err)
		}
		cas[i] = &authority{cert: cert, certPath: path}
	}
	due := map[string]string{}
	for _, l := range nodeLeaves(b, cfg, cas[0], cas[1]) {
		reason, err := leafReason(l, is.now)
		if err != nil {
			return nil, err
		}
		if reason == "" && is.rotate[l.service] {
			reason = "rotation requested"
		}
		if reason != "" {
			due[l.certPath] = reason
		}
	}
	return due, nil
}

// NodeLayout returns the paths of a node's files in dir, as IssueNode
// writes them.
func NodeLayout(dir string) NodeBundle {
	p := func(name string) string { return filepath.Join(dir, name) }
	return NodeBundle{
		ServerCA: p("server-ca.crt"), ClientCA: p("client-ca.crt"),
		KubeletClientCert: p("kubelet-client.crt"), KubeletClientKey: p("kubelet-client.key"),
		KubeletServingCert: p("kubelet-serving.crt"), KubeletServingKey: p("kubelet-serving.key"),
		KubeProxyCert: p("kube-proxy.crt"), KubeProxyKey: p("kube-proxy.key"),
		CoreDNSCert: p("coredns.crt"), CoreDNSKey: p("coredns.key"),
	}
}

// readCA loads an existing CA; unlike Generate it never creates one.
func readCA(certPath, keyPath string, now time.Time) (*authority, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("pki: read %s: %w", certPath, err)
	}
	return loadCA(certPath, keyPath, certPEM, now)
}

// copyIfChanged copies a certificate file, leaving dst alone when equal.
func copyIfChanged(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("pki: read %s: %w", src, err)
	}
	if old, err := os.ReadFile(dst); err == nil && string(old) == string(data) {
		return nil
	}
	return WriteFileAtomic(dst, data, 0o644)
}

// ParsePublicKey parses a PEM public key (PKIX or PKCS#1), ECDSA or RSA.
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	pub, err := parsePublicKey(data)
	if err != nil {
		return nil, err
	}
	switch pub.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey:
		return pub, nil
	}
	return nil, fmt.Errorf("unsupported public key type %T", pub)
}

// PublicKeyPEM returns the PEM PKIX public key of the private key at path.
func PublicKeyPEM(path string) ([]byte, error) {
	key, err := readKey(path)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("pki: encode the public key of %s: %w", path, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// NewKeyNeeded reports whether a leaf due for reason (as NodeDue says it)
// must get a new key: it has none that fits, or a rotation was requested.
func NewKeyNeeded(reason string) bool {
	switch reason {
	case "missing", "unreadable certificate", "key missing or not the certificate's", "rotation requested":
		return true
	}
	return false
}
