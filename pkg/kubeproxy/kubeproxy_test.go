package kubeproxy

import (
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
