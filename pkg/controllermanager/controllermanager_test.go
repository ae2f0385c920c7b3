package controllermanager

import (
	"net"
	"slices"
	"testing"

	"github.com/spf13/pflag"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app/config"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app/options"

	"github.com/kedge-io/kedge/pkg/args/argstest"
	"github.com/kedge-io/kedge/pkg/pki"
)

func testConfig(extra ...string) Config {
	return Config{
		Kubeconfig:  "/cred/controller-manager.kubeconfig",
		ClusterCIDR: "10.42.0.0/16",
		ServiceCIDR: "10.43.0.0/16",
		Certs: pki.Bundle{
			ServerCA:          "/tls/server-ca.crt",
			ServerCAKey:       "/tls/server-ca.key",
			ClientCA:          "/tls/client-ca.crt",
			ClientCAKey:       "/tls/client-ca.key",
			ServerCASigning:   "/tls/server-ca.signing.pem",
			ClientCASigning:   "/tls/client-ca.signing.pem",
			ServiceAccountKey: "/tls/service.key",
		},
		ExtraArgs: extra,
	}
}

func TestArgs(t *testing.T) {
	cases := []struct {
		name    string
		extra   []string
		want    map[string]string
		wantErr []string
	}{
		{
			name: "security-relevant defaults",
			want: map[string]string{
				"allocate-node-cidrs":              "true",
				"cluster-cidr":                     "10.42.0.0/16",
				"node-cidr-mask-size":              "24",
				"service-cluster-ip-range":         "10.43.0.0/16",
				"use-service-account-credentials":  "true",
				"leader-elect":                     "true",
				"profiling":                        "false",
				"bind-address":                     "127.0.0.1",
				"kubeconfig":                       "/cred/controller-manager.kubeconfig",
				"authentication-kubeconfig":        "/cred/controller-manager.kubeconfig",
				"authorization-kubeconfig":         "/cred/controller-manager.kubeconfig",
				"root-ca-file":                     "/tls/server-ca.crt",
				"service-account-private-key-file": "/tls/service.key",
				"cluster-signing-kube-apiserver-client-cert-file": "/tls/client-ca.signing.pem",
				"cluster-signing-kube-apiserver-client-key-file":  "/tls/client-ca.key",
				"cluster-signing-kubelet-client-cert-file":        "/tls/client-ca.signing.pem",
				"cluster-signing-kubelet-client-key-file":         "/tls/client-ca.key",
				"cluster-signing-kubelet-serving-cert-file":       "/tls/server-ca.signing.pem",
				"cluster-signing-kubelet-serving-key-file":        "/tls/server-ca.key",
				"cluster-signing-legacy-unknown-cert-file":        "/tls/server-ca.signing.pem",
				"cluster-signing-legacy-unknown-key-file":         "/tls/server-ca.key",
			},
		},
		{
			name:  "user value overrides a default",
			extra: []string{"profiling=true", "leader-elect=false", "+controllers=-ttl"},
			want: map[string]string{
				"profiling":    "true",
				"leader-elect": "false",
				"controllers":  "*,-ttl",
				"cluster-cidr": "10.42.0.0/16",
			},
		},
		{
			name:    "entry without = names the kedge flag",
			extra:   []string{"leader-elect"},
			wantErr: []string{"--kube-controller-manager-arg", `"leader-elect"`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			flags, err := Args(testConfig(tc.extra...))
			argstest.Check(t, flags, err, tc.want, tc.wantErr)
		})
	}
}

// TestArgsParseUpstream parses the rendered defaults with
// kube-controller-manager's own flag set, as Start does.
func TestArgsParseUpstream(t *testing.T) {
	flags, err := Args(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	s, err := options.NewKubeControllerManagerOptions()
	if err != nil {
		t.Fatal(err)
	}
	known, disabled, aliases := app.KnownControllers(), app.ControllersDisabledByDefault(), app.ControllerAliases()
	nfs := s.Flags(known, disabled, aliases)
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	for _, f := range nfs.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(flags); err != nil {
		t.Fatalf("upstream rejects kedge's defaults: %v", err)
	}
	// The controller names too (1.37 removed the cloud-provider stubs
	// kedge used to turn off by name).
	if errs := s.Generic.Validate(known, disabled, aliases); len(errs) > 0 {
		t.Errorf("upstream rejects kedge's --controllers: %v", errs)
	}
	if !s.Generic.LeaderElection.LeaderElect {
		t.Error("leader-elect not parsed as true")
	}
	if s.NodeIPAMController.NodeCIDRMaskSize != 24 {
		t.Errorf("node-cidr-mask-size parsed as %d", s.NodeIPAMController.NodeCIDRMaskSize)
	}
}

func TestSplitEarly(t *testing.T) {
	const ipam, lifecycle, sa = "node-ipam-controller", "node-lifecycle-controller", "serviceaccount-controller"
	off := []string{"-" + ipam, "-" + lifecycle, "-" + sa}
	for _, tc := range []struct {
		name      string
		list      []string
		wantRest  []string
		wantAlone []string // nil: no split
	}{
		{"default", []string{"*"}, append(slices.Clone(off), "*"), []string{ipam, lifecycle, sa}},
		{"explicit", []string{ipam, "deployment-controller"}, []string{"-" + ipam, ipam, "deployment-controller"}, []string{ipam}},
		{"one turned off by the user", []string{"*", "-" + ipam}, []string{"-" + lifecycle, "-" + sa, "*", "-" + ipam}, []string{lifecycle, sa}},
		{"none in an explicit list", []string{"deployment-controller"}, []string{"deployment-controller"}, nil},
		{"all turned off", []string{"*", "-" + ipam, "-" + lifecycle, "-" + sa}, []string{"*", "-" + ipam, "-" + lifecycle, "-" + sa}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &config.Config{}
			c.ComponentConfig.Generic.Controllers = tc.list
			alone := splitEarly(c)
			if got := c.ComponentConfig.Generic.Controllers; !slices.Equal(got, tc.wantRest) {
				t.Errorf("the other controllers' list = %v, want %v", got, tc.wantRest)
			}
			if (alone != nil) != (tc.wantAlone != nil) {
				t.Fatalf("split = %v, want %v", alone != nil, tc.wantAlone != nil)
			}
			if alone != nil && !slices.Equal(alone.ComponentConfig.Generic.Controllers, tc.wantAlone) {
				t.Errorf("alone = %v, want %v", alone.ComponentConfig.Generic.Controllers, tc.wantAlone)
			}
		})
	}
}

// TestArgsServingCert: with the bundle's serving certificate the
// controller-manager generates no self-signed pair on start (two RSA-2048
// keys before its controllers run, the node IPAM among them); without one,
// upstream's fallback stays.
func TestArgsServingCert(t *testing.T) {
	generated := func(cfg Config) (certFile string, selfSigned bool) {
		t.Helper()
		flags, err := Args(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := options.NewKubeControllerManagerOptions()
		if err != nil {
			t.Fatal(err)
		}
		nfs := s.Flags(app.KnownControllers(), app.ControllersDisabledByDefault(), app.ControllerAliases())
		fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
		for _, f := range nfs.FlagSets {
			fs.AddFlagSet(f)
		}
		if err := fs.Parse(flags); err != nil {
			t.Fatal(err)
		}
		// What options.Config does before it serves.
		if err := s.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		return s.SecureServing.ServerCert.CertKey.CertFile, s.SecureServing.ServerCert.GeneratedCert != nil
	}
	cfg := testConfig()
	cfg.Certs.ControllerManagerServingCert, cfg.Certs.ControllerManagerServingKey = "/tls/controller-manager-serving.crt", "/tls/controller-manager-serving.key"
	if file, self := generated(cfg); file != cfg.Certs.ControllerManagerServingCert || self {
		t.Errorf("with a serving certificate: cert file %q, self-signed %v", file, self)
	}
	if file, self := generated(testConfig()); file != "" || !self {
		t.Errorf("without one: cert file %q, self-signed %v (the fallback is upstream's)", file, self)
	}
}
