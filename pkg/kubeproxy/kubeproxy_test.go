package kubeproxy

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"k8s.io/kubernetes/cmd/kube-proxy/app"

	"github.com/kedge-io/kedge/pkg/args"
)

func TestArgs(t *testing.T) {
	cfg := Config{NodeName: "n1", NodeIP: net.ParseIP("192.0.2.5"), Kubeconfig: "/k/kube-proxy.kubeconfig", ClusterCIDR: "10.42.0.0/16"}
	flags, err := Args(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"proxy-mode": "iptables", "cluster-cidr": "10.42.0.0/16", "hostname-override": "n1",
		"kubeconfig": "/k/kube-proxy.kubeconfig", "healthz-bind-address": HealthzAddress, "bind-address": "192.0.2.5",
	} {
		if got, _ := args.Value(flags, key); got != want {
			t.Errorf("--%s = %q, want %q", key, got, want)
		}
	}
	// Every rendered flag exists upstream and parses.
	fs := pflag.NewFlagSet("kube-proxy", pflag.ContinueOnError)
	app.NewOptions().AddFlags(fs)
	if err := fs.Parse(flags); err != nil {
		t.Fatalf("upstream kube-proxy rejects kedge's flags: %v", err)
	}

	cfg.ExtraArgs = []string{"proxy-mode=nftables"}
	flags, err = Args(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := args.Value(flags, "proxy-mode"); got != "nftables" {
		t.Fatalf("override: proxy-mode = %q", got)
	}
	cfg.ExtraArgs = []string{"proxy-mode"}
	if _, err := Args(cfg); err == nil || !strings.Contains(err.Error(), "--kube-proxy-arg") {
		t.Fatalf("err = %v, want one naming --kube-proxy-arg", err)
	}
}

func TestStartRejectsUnknownFlag(t *testing.T) {
	p := New(Config{NodeName: "n1", NodeIP: net.ParseIP("192.0.2.5"), ClusterCIDR: "10.42.0.0/16", ExtraArgs: []string{"no-such-flag=1"}})
	err := p.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "--kube-proxy-arg") || !strings.Contains(err.Error(), "no-such-flag") {
		t.Fatalf("err = %v", err)
	}
}

func TestKeepConntrackMax(t *testing.T) {
	read := func(v int, err error) func() (int, error) { return func() (int, error) { return v, err } }
	for _, tc := range []struct {
		current int
		err     error
		cpus    int
		want    bool
	}{
		{262144, nil, 2, true},   // larger than kube-proxy's 131072: keep it (and never write a read-only sysctl)
		{131072, nil, 2, true},   // equal: nothing to write
		{65536, nil, 2, false},   // smaller: kube-proxy raises it
		{262144, nil, 16, false}, // 16 CPUs want 524288
		{0, errors.New("no conntrack module"), 2, false},
	} {
		if got := keepConntrackMax(read(tc.current, tc.err), tc.cpus); got != tc.want {
			t.Errorf("current %d (%v), %d CPUs: keep = %v, want %v", tc.current, tc.err, tc.cpus, got, tc.want)
		}
	}
	// A --kube-proxy-arg still wins over the kept default.
	cfg := Config{NodeName: "n1", NodeIP: net.ParseIP("192.0.2.5"), ClusterCIDR: "10.42.0.0/16", ExtraArgs: []string{"conntrack-max-per-core=65536"}}
	flags, err := Args(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := args.Value(flags, "conntrack-max-per-core"); got != "65536" {
		t.Fatalf("conntrack-max-per-core = %q with the user's value", got)
	}
}
