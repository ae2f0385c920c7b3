package apiserver

import (
	"net"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"

	"github.com/kedge-io/kedge/pkg/args"
	"github.com/kedge-io/kedge/pkg/args/argstest"
	"github.com/kedge-io/kedge/pkg/pki"
)

func testConfig(extra ...string) Config {
	return Config{
		BindAddress:   "0.0.0.0",
		Port:          7443,
		AdvertiseIP:   net.ParseIP("192.0.2.10"),
		ServiceCIDR:   "10.43.0.0/16",
		ClusterDomain: "cluster.local",
		EtcdServers:   []string{"https://127.0.0.1:2379", "https://192.0.2.11:2379"},
		CertDir:       "/data/server/tls/apiserver",
		Certs: pki.Bundle{
			ServerCA:                   "/tls/server-ca.crt",
			ClientCA:                   "/tls/client-ca.crt",
			RequestHeaderCA:            "/tls/request-header-ca.crt",
			ProxyClientCert:            "/tls/proxy-client.crt",
			ProxyClientKey:             "/tls/proxy-client.key",
			EtcdServerCA:               "/tls/etcd/server-ca.crt",
			EtcdClientCert:             "/tls/etcd/client.crt",
			EtcdClientKey:              "/tls/etcd/client.key",
			ServiceAccountKey:          "/tls/service.key",
			ServiceAccountPub:          "/tls/service.pub",
			APIServerCert:              "/tls/serving-kube-apiserver.crt",
			APIServerKey:               "/tls/serving-kube-apiserver.key",
			APIServerKubeletClientCert: "/tls/client-kube-apiserver.crt",
			APIServerKubeletClientKey:  "/tls/client-kube-apiserver.key",
		},
		ExtraArgs: extra,
	}
}

func TestArgs(t *testing.T) {
	cases := []struct {
		name    string
		extra   []string
		want    map[string]string // flag → value
		absent  []string
		wantErr []string
	}{
		{
			name: "security-relevant defaults",
			want: map[string]string{
				"authorization-mode":               "Node,RBAC",
				"anonymous-auth":                   "false",
				"enable-admission-plugins":         "NodeRestriction",
				"profiling":                        "false",
				"client-ca-file":                   "/tls/client-ca.crt",
				"etcd-cafile":                      "/tls/etcd/server-ca.crt",
				"etcd-certfile":                    "/tls/etcd/client.crt",
				"etcd-keyfile":                     "/tls/etcd/client.key",
				"etcd-servers":                     "https://127.0.0.1:2379,https://192.0.2.11:2379",
				"service-account-key-file":         "/tls/service.pub",
				"service-account-signing-key-file": "/tls/service.key",
				"service-account-issuer":           "https://kubernetes.default.svc.cluster.local",
				"api-audiences":                    "https://kubernetes.default.svc.cluster.local,kedge",
				"secure-port":                      "7443",
				"bind-address":                     "0.0.0.0",
				"advertise-address":                "192.0.2.10",
				"service-cluster-ip-range":         "10.43.0.0/16",
				"tls-cert-file":                    "/tls/serving-kube-apiserver.crt",
				"tls-private-key-file":             "/tls/serving-kube-apiserver.key",
				"kubelet-certificate-authority":    "/tls/server-ca.crt",
				"kubelet-client-certificate":       "/tls/client-kube-apiserver.crt",
				"kubelet-client-key":               "/tls/client-kube-apiserver.key",
				"requestheader-client-ca-file":     "/tls/request-header-ca.crt",
				"requestheader-allowed-names":      "system:auth-proxy",
				"proxy-client-cert-file":           "/tls/proxy-client.crt",
				"proxy-client-key-file":            "/tls/proxy-client.key",
				"cert-dir":                         "/data/server/tls/apiserver",
				"enable-aggregator-routing":        "true",
			},
			absent: []string{"insecure-port", "token-auth-file"},
		},
		{
			name:  "user value overrides a default, new keys are added",
			extra: []string{"profiling=true", "--v=2", "+enable-admission-plugins=PodSecurity"},
			want: map[string]string{
				"profiling":                "true",
				"v":                        "2",
				"enable-admission-plugins": "NodeRestriction,PodSecurity",
				"authorization-mode":       "Node,RBAC",
			},
		},
		{
			name:    "entry without = names the kedge flag",
			extra:   []string{"profiling"},
			wantErr: []string{"--kube-apiserver-arg", `"profiling"`, "key=value"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			flags, err := Args(testConfig(tc.extra...))
			argstest.Check(t, flags, err, tc.want, tc.wantErr)
			for _, k := range tc.absent {
				if v, ok := args.Value(flags, k); ok {
					t.Errorf("--%s=%s present, want absent", k, v)
				}
			}
			for _, f := range flags {
				if !strings.HasPrefix(f, "--") || !strings.Contains(f, "=") {
					t.Errorf("malformed flag %q", f)
				}
			}
		})
	}
}

func TestArgsClusterDomain(t *testing.T) {
	cfg := testConfig()
	cfg.ClusterDomain = "corp.example"
	flags, err := Args(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := args.Value(flags, "service-account-issuer"); v != "https://kubernetes.default.svc.corp.example" {
		t.Errorf("service-account-issuer = %q", v)
	}
}

// TestArgsParseUpstream parses the rendered defaults with kube-apiserver's own
// flag set, as Start does: every default is a real upstream flag with a valid value.
func TestArgsParseUpstream(t *testing.T) {
	flags, err := Args(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	s := options.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(flags); err != nil {
		t.Fatalf("upstream rejects kedge's defaults: %v", err)
	}
	if s.SecureServing.BindPort != 7443 {
		t.Errorf("parsed secure port %d, want 7443", s.SecureServing.BindPort)
	}
	if got := s.Authorization.Modes; strings.Join(got, ",") != "Node,RBAC" {
		t.Errorf("parsed authorization modes %q", got)
	}
}
