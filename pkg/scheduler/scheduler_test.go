package scheduler

import (
	"net"
	"testing"

	"github.com/spf13/pflag"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/latest"

	"github.com/kedge-io/kedge/pkg/args"
	"github.com/kedge-io/kedge/pkg/args/argstest"
)

func TestArgs(t *testing.T) {
	const kubeconfig = "/cred/scheduler.kubeconfig"
	cases := []struct {
		name    string
		extra   []string
		want    map[string]string
		wantErr []string
	}{
		{
			name: "security-relevant defaults",
			want: map[string]string{
				"leader-elect":              "true",
				"kubeconfig":                kubeconfig,
				"authentication-kubeconfig": kubeconfig,
				"authorization-kubeconfig":  kubeconfig,
				"bind-address":              "127.0.0.1",
				"profiling":                 "false",
				"secure-port":               "10259",
			},
		},
		{
			name:  "user value overrides a default",
			extra: []string{"profiling=true", "--secure-port=0", "v=3"},
			want: map[string]string{
				"profiling":    "true",
				"secure-port":  "0",
				"v":            "3",
				"leader-elect": "true",
			},
		},
		{
			name:    "entry without = names the kedge flag",
			extra:   []string{"profiling"},
			wantErr: []string{"--kube-scheduler-arg", `"profiling"`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			flags, err := Args(Config{Kubeconfig: kubeconfig, ExtraArgs: tc.extra})
			argstest.Check(t, flags, err, tc.want, tc.wantErr)
		})
	}
}

// TestArgsParseUpstream parses the rendered defaults with kube-scheduler's
// own flag set, as Start does.
func TestArgsParseUpstream(t *testing.T) {
	flags, err := Args(Config{Kubeconfig: "/cred/scheduler.kubeconfig"})
	if err != nil {
		t.Fatal(err)
	}
	opts := parseUpstream(t, flags)
	if opts.SecureServing.BindPort != 10259 {
		t.Errorf("secure port parsed as %d", opts.SecureServing.BindPort)
	}
}

// TestInProcessArgs: kedge's own scheduler gets the loopback client limits
// (Args, which the benchmark baseline runs, keeps upstream's 50/100), and a
// user's --kube-scheduler-arg still wins, as upstream reads the flags.
func TestInProcessArgs(t *testing.T) {
	const kc = "/cred/scheduler.kubeconfig"
	client := func(flags []string) (float32, int32) {
		t.Helper()
		opts := parseUpstream(t, flags)
		cfg, err := latest.Default() // as app.Setup does
		if err != nil {
			t.Fatal(err)
		}
		opts.ComponentConfig = cfg
		opts.ApplyDeprecated() // as ApplyTo does without --config
		return opts.ComponentConfig.ClientConnection.QPS, opts.ComponentConfig.ClientConnection.Burst
	}
	plain, err := Args(Config{Kubeconfig: kc})
	if err != nil {
		t.Fatal(err)
	}
	if qps, burst := client(plain); qps != 50 || burst != 100 {
		t.Errorf("Args: client %v QPS, burst %d; want upstream's 50, 100", qps, burst)
	}
	flags, err := InProcessArgs(Config{Kubeconfig: kc})
	if err != nil {
		t.Fatal(err)
	}
	if qps, burst := client(flags); qps != 500 || burst != 1000 {
		t.Errorf("InProcessArgs: client %v QPS, burst %d; want %s, %s", qps, burst, InProcessQPS, InProcessBurst)
	}
	user, err := InProcessArgs(Config{Kubeconfig: kc, ExtraArgs: []string{"kube-api-qps=20", "kube-api-burst=30"}})
	if err != nil {
		t.Fatal(err)
	}
	if qps, burst := client(user); qps != 20 || burst != 30 {
		t.Errorf("with the user's kube-api-qps=20, kube-api-burst=30: %v, %d", qps, burst)
	}
}

// TestArgsServingCert: with kedge's serving certificate the scheduler
// serves it and generates no self-signed pair (two RSA-2048 keys, ~0.2 s of
// CPU on every start); without one, upstream's self-signed fallback stays.
func TestArgsServingCert(t *testing.T) {
	generated := func(cfg Config) (certFile string, selfSigned bool) {
		t.Helper()
		flags, err := Args(cfg)
		if err != nil {
			t.Fatal(err)
		}
		opts := parseUpstream(t, flags)
		// What options.Config does before it serves.
		if err := opts.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		return opts.SecureServing.ServerCert.CertKey.CertFile, opts.SecureServing.ServerCert.GeneratedCert != nil
	}
	const crt, key = "/tls/scheduler-serving.crt", "/tls/scheduler-serving.key"
	if file, self := generated(Config{Kubeconfig: "/kc", ServingCert: crt, ServingKey: key}); file != crt || self {
		t.Errorf("with a serving certificate: cert file %q, self-signed %v", file, self)
	}
	if file, self := generated(Config{Kubeconfig: "/kc"}); file != "" || !self {
		t.Errorf("without one: cert file %q, self-signed %v (the fallback is upstream's)", file, self)
	}
	// A user's --kube-scheduler-arg still wins.
	flags, err := Args(Config{Kubeconfig: "/kc", ServingCert: crt, ServingKey: key, ExtraArgs: []string{"tls-cert-file=/mine.crt"}})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := args.Value(flags, "tls-cert-file"); v != "/mine.crt" {
		t.Errorf("tls-cert-file = %q, want the user's", v)
	}
}

// parseUpstream parses flags with kube-scheduler's own flag set, as Start
// does, failing t if upstream rejects them.
func parseUpstream(t *testing.T, flags []string) *options.Options {
	t.Helper()
	opts := options.NewOptions()
	fs := pflag.NewFlagSet("kube-scheduler", pflag.ContinueOnError)
	for _, f := range opts.Flags.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(flags); err != nil {
		t.Fatalf("upstream rejects the flags %q: %v", flags, err)
	}
	return opts
}
