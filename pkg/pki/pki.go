package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"
)

// Validity periods and the renewal threshold of generated certificates.
const (
	caValidityYears = 10
	clockSkew       = time.Hour
	renewBefore     = 90 * 24 * time.Hour
)

// Config says what certificates a server needs.
type Config struct {
	// Dir is the directory that holds every file, e.g. <data-dir>/server/tls.
	// It is created with mode 0700 if missing.
	Dir string
	// ClusterDomain is the cluster DNS domain, e.g. "cluster.local". Empty
	// means "cluster.local".
	ClusterDomain string
	// ServiceIP is the first IP of the service CIDR, e.g. 10.43.0.1: the
	// address of the kubernetes Service. It is required.
	ServiceIP net.IP
	// SANs are extra subject alternative names for the apiserver serving
	// certificate: node IPs, the hostname, every --tls-san. Each entry is an
	// IP address or a DNS name. The IP entries also go into the etcd server
	// and peer certificates.
	SANs []string
	// NodeName is the hostname or node name, included in the SANs of the
	// apiserver and etcd serving certificates. Empty means none.
	NodeName string
	// Now returns the current time; nil means time.Now. Tests use it.
	Now func() time.Time
	// Validity is how long a new leaf is valid; 0 means
	// DefaultLeafValidity. A leaf is renewed in its RenewWindow.
	Validity time.Duration
	// Rotate names services (Services) whose leaves are issued again even
	// if they are still good.
	Rotate []string
	// OnIssue, if set, is called after each leaf is issued, with its
	// certificate's path and why it was issued.
	OnIssue func(certPath, reason string)
}

// Bundle holds the absolute paths of everything Generate wrote.
type Bundle struct {
	// Dir is the absolute form of Config.Dir.
	Dir string

	// ServerCA and ServerCAKey are the cluster CA, which signs serving
	// certificates (apiserver, later kubelets).
	ServerCA, ServerCAKey string
	// ClientCA and ClientCAKey are the CA that signs all client
	// certificates (admin, components, kubelets).
	ClientCA, ClientCAKey string
	// ServerCASigning and ClientCASigning hold the signing CA of ServerCA
	// and ClientCA alone: during a CA rotation those files are bundles of
	// two CAs, and the controller-manager's CSR signer wants exactly one
	// certificate (--cluster-signing-*-cert-file).
	ServerCASigning, ClientCASigning string
	// RequestHeaderCA and RequestHeaderCAKey are the front-proxy CA, which
	// signs the proxy client certificate the aggregator presents.
	RequestHeaderCA, RequestHeaderCAKey string
	// ProxyClientCert and ProxyClientKey are the front-proxy client
	// certificate (CN=system:auth-proxy), signed by RequestHeaderCA.
	ProxyClientCert, ProxyClientKey string

	// EtcdServerCA and EtcdServerCAKey sign the etcd serving certificate
	// and the etcd client certificate.
	EtcdServerCA, EtcdServerCAKey string
	// EtcdPeerCA and EtcdPeerCAKey sign the etcd peer certificate.
	EtcdPeerCA, EtcdPeerCAKey string
	// EtcdServerCert and EtcdServerKey are the etcd serving certificate
	// (server and client usages), signed by EtcdServerCA.
	EtcdServerCert, EtcdServerKey string
	// EtcdPeerCert and EtcdPeerKey are the etcd peer certificate (server
	// and client usages), signed by EtcdPeerCA.
	EtcdPeerCert, EtcdPeerKey string
	// EtcdClientCert and EtcdClientKey are the apiserver's client
	// certificate for etcd (CN=etcd-client), signed by EtcdServerCA.
	EtcdClientCert, EtcdClientKey string

	// ServiceAccountKey is the RSA private key (PKCS#1 PEM) that signs
	// service account tokens.
	ServiceAccountKey string
	// ServiceAccountPub is the PEM public key of ServiceAccountKey.
	ServiceAccountPub string

	// APIServerCert and APIServerKey are the apiserver serving
	// certificate, signed by ServerCA.
	APIServerCert, APIServerKey string
	// APIServerKubeletClientCert and APIServerKubeletClientKey are the
	// apiserver's client certificate for kubelets (CN=system:kube-apiserver,
	// O=system:masters), signed by ClientCA.
	APIServerKubeletClientCert, APIServerKubeletClientKey string
	// AdminCert and AdminKey are the admin client certificate
	// (CN=system:admin, O=system:masters), signed by ClientCA.
	AdminCert, AdminKey string
	// ControllerManagerCert and ControllerManagerKey are the
	// kube-controller-manager client certificate, signed by ClientCA.
	ControllerManagerCert, ControllerManagerKey string
	// SchedulerCert and SchedulerKey are the kube-scheduler client
	// certificate, signed by ClientCA.
	SchedulerCert, SchedulerKey string
	// ControllerManagerServingCert and ControllerManagerServingKey are the
	// kube-controller-manager's HTTPS certificate (SANs localhost,
	// 127.0.0.1, ::1), and SchedulerServingCert and SchedulerServingKey the
	// kube-scheduler's, signed by ServerCA. Without them each generates a
	// self-signed RSA pair (two 2048-bit keys) in memory on every start.
	ControllerManagerServingCert, ControllerManagerServingKey string
	SchedulerServingCert, SchedulerServingKey                 string
	// KubeProxyCert and KubeProxyKey are the kube-proxy client certificate,
	// signed by ClientCA.
	KubeProxyCert, KubeProxyKey string
	// SupervisorCert and SupervisorKey are the supervisor's client
	// certificate (CN=system:kedge-supervisor, O=system:masters), used by
	// the join API, signed by ClientCA.
	SupervisorCert, SupervisorKey string
	// MetricsServerCert and MetricsServerKey are the in-process
	// metrics-server's serving certificate (SAN MetricsServerDNSName, the
	// name the aggregator verifies), signed by ServerCA.
	MetricsServerCert, MetricsServerKey string
	// MetricsServerClientCert and MetricsServerClientKey are
	// metrics-server's client certificate for the apiserver and the
	// kubelets (CN=system:kedge-metrics-server), signed by ClientCA.
	MetricsServerClientCert, MetricsServerClientKey string
}

// MetricsServerDNSName is the name the aggregator verifies on
// metrics-server's serving certificate: its Service in kube-system.
const MetricsServerDNSName = "metrics-server.kube-system.svc"

// layout returns the path of every file under dir.
func layout(dir string) Bundle {
	etcd := filepath.Join(dir, "etcd")
	p := func(name string) string { return filepath.Join(dir, name) }
	e := func(name string) string { return filepath.Join(etcd, name) }
	return Bundle{
		Dir:                          dir,
		ServerCA:                     p("server-ca.crt"),
		ServerCAKey:                  p("server-ca.key"),
		ClientCA:                     p("client-ca.crt"),
		ClientCAKey:                  p("client-ca.key"),
		ServerCASigning:              p("server-ca.signing.pem"),
		ClientCASigning:              p("client-ca.signing.pem"),
		RequestHeaderCA:              p("request-header-ca.crt"),
		RequestHeaderCAKey:           p("request-header-ca.key"),
		ProxyClientCert:              p("proxy-client.crt"),
		ProxyClientKey:               p("proxy-client.key"),
		EtcdServerCA:                 e("server-ca.crt"),
		EtcdServerCAKey:              e("server-ca.key"),
		EtcdPeerCA:                   e("peer-ca.crt"),
		EtcdPeerCAKey:                e("peer-ca.key"),
		EtcdServerCert:               e("server.crt"),
		EtcdServerKey:                e("server.key"),
		EtcdPeerCert:                 e("peer.crt"),
		EtcdPeerKey:                  e("peer.key"),
		EtcdClientCert:               e("client.crt"),
		EtcdClientKey:                e("client.key"),
		ServiceAccountKey:            p("service-account.key"),
		ServiceAccountPub:            p("service-account.pub"),
		APIServerCert:                p("apiserver.crt"),
		APIServerKey:                 p("apiserver.key"),
		APIServerKubeletClientCert:   p("apiserver-kubelet-client.crt"),
		APIServerKubeletClientKey:    p("apiserver-kubelet-client.key"),
		AdminCert:                    p("admin.crt"),
		AdminKey:                     p("admin.key"),
		ControllerManagerCert:        p("controller-manager.crt"),
		ControllerManagerKey:         p("controller-manager.key"),
		SchedulerCert:                p("scheduler.crt"),
		SchedulerKey:                 p("scheduler.key"),
		ControllerManagerServingCert: p("controller-manager-serving.crt"),
		ControllerManagerServingKey:  p("controller-manager-serving.key"),
		SchedulerServingCert:         p("scheduler-serving.crt"),
		SchedulerServingKey:          p("scheduler-serving.key"),
		KubeProxyCert:                p("kube-proxy.crt"),
		KubeProxyKey:                 p("kube-proxy.key"),
		SupervisorCert:               p("supervisor.crt"),
		SupervisorKey:                p("supervisor.key"),
		MetricsServerCert:            p("metrics-server.crt"),
		MetricsServerKey:             p("metrics-server.key"),
		MetricsServerClientCert:      p("metrics-server-client.crt"),
		MetricsServerClientKey:       p("metrics-server-client.key"),
	}
}

// Generate creates the CAs and leaf certificates under cfg.Dir, reusing what
// is already there.
//
// An existing CA is never regenerated: if its key is missing or does not
// match its certificate, Generate returns an error naming the file. The
// service-account key is generated once and kept. An existing leaf
// certificate is kept while it is signed by the current CA, matches its key,
// has the expected subject and usages, covers every requested SAN and is
// not in its renewal window (90 days for a one-year leaf, RenewWindow);
// otherwise, or when its service is in cfg.Rotate, only that leaf is issued
// again. Running Generate twice with the same Config changes no file.
//
// Every file is written atomically. Generate is not safe to run
// concurrently on the same directory.
func Generate(cfg Config) (Bundle, error) {
	if cfg.Dir == "" {
		return Bundle{}, errors.New("pki: Config.Dir is required")
	}
	if cfg.ServiceIP == nil {
		return Bundle{}, errors.New("pki: Config.ServiceIP is required")
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = "cluster.local"
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return Bundle{}, fmt.Errorf("pki: resolve %s: %w", cfg.Dir, err)
	}
	is, err := newIssuing(cfg.Now, cfg.Validity, cfg.Rotate, cfg.OnIssue)
	if err != nil {
		return Bundle{}, err
	}
	now := is.now

	b := layout(dir)
	api, err := apiserverSANs(cfg)
	if err != nil {
		return Bundle{}, err
	}
	etcd, err := etcdSANs(cfg)
	if err != nil {
		return Bundle{}, err
	}
	for _, d := range []string{dir, filepath.Dir(b.EtcdServerCA)} {
		if err := mkdirPrivate(d); err != nil {
			return Bundle{}, err
		}
	}

	var cas [5]*authority
	for i, c := range b.cas() {
		if cas[i], err = loadOrCreateCA(c.cert, c.key, c.name, now); err != nil {
			return Bundle{}, err
		}
	}
	serverCA, clientCA, requestHeaderCA, etcdServerCA, etcdPeerCA := cas[0], cas[1], cas[2], cas[3], cas[4]
	for path, ca := range map[string]*authority{b.ServerCASigning: serverCA, b.ClientCASigning: clientCA} {
		if err := writeCert(path, ca.cert.Raw); err != nil { // unchanged content is not written again
			return Bundle{}, err
		}
	}

	if err := ensureServiceAccountKey(b.ServiceAccountKey, b.ServiceAccountPub); err != nil {
		return Bundle{}, err
	}

	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	masters := []string{"system:masters"}
	// The controller-manager and the scheduler serve on 127.0.0.1 (their
	// upstream self-signed certificates name localhost and that address).
	localhost := sanSet{dns: []string{"localhost"}, ips: []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}}
	leaves := []leafSpec{
		{"apiserver", b.APIServerCert, b.APIServerKey, serverCA, "kube-apiserver", nil, server, api},
		{"apiserver", b.APIServerKubeletClientCert, b.APIServerKubeletClientKey, clientCA, "system:kube-apiserver", masters, client, sanSet{}},
		{"admin", b.AdminCert, b.AdminKey, clientCA, "system:admin", masters, client, sanSet{}},
		{"controller-manager", b.ControllerManagerCert, b.ControllerManagerKey, clientCA, "system:kube-controller-manager", nil, client, sanSet{}},
		{"scheduler", b.SchedulerCert, b.SchedulerKey, clientCA, "system:kube-scheduler", nil, client, sanSet{}},
		{"controller-manager", b.ControllerManagerServingCert, b.ControllerManagerServingKey, serverCA, "kube-controller-manager", nil, server, localhost},
		{"scheduler", b.SchedulerServingCert, b.SchedulerServingKey, serverCA, "kube-scheduler", nil, server, localhost},
		{"kube-proxy", b.KubeProxyCert, b.KubeProxyKey, clientCA, "system:kube-proxy", nil, client, sanSet{}},
		{"supervisor", b.SupervisorCert, b.SupervisorKey, clientCA, "system:kedge-supervisor", masters, client, sanSet{}},
		{"metrics-server", b.MetricsServerCert, b.MetricsServerKey, serverCA, "metrics-server", nil, server, sanSet{dns: []string{MetricsServerDNSName}}},
		{"metrics-server", b.MetricsServerClientCert, b.MetricsServerClientKey, clientCA, "system:kedge-metrics-server", nil, client, sanSet{}},
		{"auth-proxy", b.ProxyClientCert, b.ProxyClientKey, requestHeaderCA, "system:auth-proxy", nil, client, sanSet{}},
		{"etcd", b.EtcdServerCert, b.EtcdServerKey, etcdServerCA, "etcd-server", nil, both, etcd},
		{"etcd", b.EtcdPeerCert, b.EtcdPeerKey, etcdPeerCA, "etcd-peer", nil, both, etcd},
		{"etcd", b.EtcdClientCert, b.EtcdClientKey, etcdServerCA, "etcd-client", nil, client, sanSet{}},
	}
	for _, l := range leaves {
		if err := ensureLeaf(l, is); err != nil {
			return Bundle{}, err
		}
	}
	return b, nil
}

// Layout returns the paths Generate uses under dir, without touching the
// disk: a joining server writes the cluster's CAs there before Generate.
func Layout(dir string) Bundle { return layout(dir) }
