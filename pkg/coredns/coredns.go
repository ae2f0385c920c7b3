// Package coredns runs CoreDNS in the kedge process on every node (node-local
// DNS built in), from the CoreDNS library with only the plugins kedge needs:
// kubernetes, forward, cache, loop, errors, loadbalance, bind, health and ready.
//
// How pods reach it: the kube-dns Service (ClusterIP --cluster-dns) has no
// selector and internalTrafficPolicy: Local; each node publishes an
// EndpointSlice with its own node IP (see endpoints.go), so kube-proxy on a
// node sends DNS only to that node's CoreDNS. A node's pods keep resolving
// when another node is down, and no DNS pod or image is needed.
//
//	d := coredns.New(coredns.Config{NodeName: "n1", NodeIP: ip, ClusterDomain: "cluster.local", Kubeconfig: kc})
//	_ = d.Start(ctx)
//	_ = d.Ready(ctx) // answers kubernetes.default.svc.cluster.local
package coredns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	_ "github.com/kedge-io/kedge/pkg/coredns/plugins" // the Corefile's plugins

	"github.com/kedge-io/kedge/pkg/component"
)

// ReadyAddress is where the ready plugin reports on this node.
const ReadyAddress = "127.0.0.1:8181"

// HealthAddress is where the health plugin answers /health on this node.
const HealthAddress = "127.0.0.1:8180"

// Port is the DNS port CoreDNS serves on the node IP.
const Port = 53

// Config describes CoreDNS on one node.
type Config struct {
	NodeName      string
	NodeIP        net.IP // CoreDNS binds NodeIP:53 (udp and tcp)
	ClusterDomain string
	Kubeconfig    string // a client that may list services, endpointslices, pods and namespaces
	ResolvConf    string // upstream resolvers for names outside the cluster, e.g. /etc/resolv.conf
	Log           *slog.Logger
}

// CoreDNS is the in-process DNS component.
type CoreDNS struct {
	cfg  Config
	mu   sync.Mutex
	inst *caddy.Instance
}

var _ component.Component = (*CoreDNS)(nil)

// New returns the component; nothing runs until Start.
func New(cfg Config) *CoreDNS { return &CoreDNS{cfg: cfg} }

// Name implements component.Component.
func (*CoreDNS) Name() string { return "coredns" }

// Corefile renders CoreDNS's configuration for cfg.
func Corefile(cfg Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".:%d {\n", Port)
	fmt.Fprintf(&b, "    bind %s\n", cfg.NodeIP)
	b.WriteString("    errors\n")
	fmt.Fprintf(&b, "    health %s\n", HealthAddress)
	fmt.Fprintf(&b, "    ready %s\n", ReadyAddress)
	fmt.Fprintf(&b, "    kubernetes %s in-addr.arpa ip6.arpa {\n", cfg.ClusterDomain)
	fmt.Fprintf(&b, "        kubeconfig %s\n", cfg.Kubeconfig)
	b.WriteString("        pods insecure\n")
	b.WriteString("        fallthrough in-addr.arpa ip6.arpa\n")
	b.WriteString("        ttl 30\n")
	b.WriteString("    }\n")
	fmt.Fprintf(&b, "    forward . %s\n", cfg.ResolvConf)
	b.WriteString("    cache 30\n")
	b.WriteString("    loop\n")
	b.WriteString("    loadbalance\n")
	b.WriteString("}\n")
	return b.String()
}

// Start renders the Corefile and starts the DNS servers.
func (d *CoreDNS) Start(context.Context) error {
	if d.cfg.ResolvConf == "" {
		d.cfg.ResolvConf = "/etc/resolv.conf"
	}
	caddy.Quiet = true
	dnsserver.Quiet = true // no ".:53 on <ip>" on stdout
	// The kubernetes plugin's setup points the process-wide klog at
	// CoreDNS's logger; put kedge's routing back once it has run.
	prev := klog.Background()
	inst, err := caddy.Start(caddy.CaddyfileInput{
		Contents:       []byte(Corefile(d.cfg)),
		Filepath:       "Corefile",
		ServerTypeName: "dns",
	})
	klog.SetLoggerWithOptions(prev, klog.ContextualLogger(true))
	if err != nil {
		if strings.Contains(err.Error(), "address already in use") {
			return fmt.Errorf("DNS port %s: already in use (another DNS server on this host? kedge serves cluster DNS on the node IP): %w",
				net.JoinHostPort(d.cfg.NodeIP.String(), strconv.Itoa(Port)), err)
		}
		return err
	}
	d.mu.Lock()
	d.inst = inst
	d.mu.Unlock()
	return nil
}

// Ready waits until the kubernetes plugin has synced and a lookup of the
// kubernetes Service answers on the node IP, then publishes this node's
// endpoint of the kube-dns Service: pods on this node get DNS from here
// only once it works.
func (d *CoreDNS) Ready(ctx context.Context) error {
	if err := d.waitAnswers(ctx); err != nil {
		return err
	}
	rest, err := clientcmd.BuildConfigFromFlags("", d.cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", d.cfg.Kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return err
	}
	return PublishEndpoint(ctx, client, d.cfg)
}

// waitAnswers polls a lookup of the kubernetes Service on the node IP.
func (d *CoreDNS) waitAnswers(ctx context.Context) error {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var dialer net.Dialer
		return dialer.DialContext(ctx, network, net.JoinHostPort(d.cfg.NodeIP.String(), strconv.Itoa(Port)))
	}}
	name := "kubernetes.default.svc." + d.cfg.ClusterDomain + "."
	for {
		lookup, cancel := context.WithTimeout(ctx, 2*time.Second)
		addrs, err := r.LookupHost(lookup, name)
		cancel()
		if err == nil && len(addrs) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to resolve %s: %w (last: %v)", d.cfg.NodeIP, name, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop stops the DNS servers and runs the plugins' shutdown hooks.
func (d *CoreDNS) Stop(context.Context) error {
	d.mu.Lock()
	inst := d.inst
	d.inst = nil
	d.mu.Unlock()
	if inst == nil {
		return nil
	}
	err := inst.Stop()
	inst.ShutdownCallbacks()
	return err
}
