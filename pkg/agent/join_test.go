package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kedge-io/kedge/pkg/flannel"
	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/supervisor"
	"github.com/kedge-io/kedge/pkg/upgrade"
)

// TestJoin runs an agent's join against a real supervisor over TLS.
func TestJoin(t *testing.T) {
	ca, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	sup, err := supervisor.New(supervisor.Config{
		CACertFile: ca.ServerCA, Secret: "s3cret", CA: ca,
		Settings: supervisor.Settings{ServiceCIDR: "10.43.0.0/16"},
		Cluster: supervisor.Cluster{ClusterCIDR: "10.42.0.0/16", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local",
			FlannelBackend: "host-gw", Servers: []string{"https://192.0.2.1:6443"}},
		NewClient: func() (kubernetes.Interface, error) { return fake.NewClientset(), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(sup.Wrap(http.NotFoundHandler()))
	cert, err := tls.LoadX509KeyPair(ca.APIServerCert, ca.APIServerKey)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	caPEM, _ := os.ReadFile(ca.ServerCA)
	token := join.New(caPEM, "s3cret").String()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	node := Config{DataDir: t.TempDir(), NodeName: "w1", NodeIP: net.ParseIP("192.0.2.7")}
	if err := Join(t.Context(), &node, srv.URL, token, log); err != nil {
		t.Fatal(err)
	}
	if node.ClusterCIDR != "10.42.0.0/16" || node.ServiceCIDR != "10.43.0.0/16" || node.ClusterDNS.String() != "10.43.0.10" || node.FlannelBackend != flannel.HostGW {
		t.Fatalf("cluster settings not taken from the server: %+v", node)
	}
	for _, key := range []string{node.Certs.KubeletClientKey, node.Certs.KubeletServingKey, node.Certs.KubeProxyKey, node.Certs.CoreDNSKey, filepath.Join(node.Dir(), "node-password")} {
		if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", key, err, st.Mode())
		}
	}
	if want := strings.TrimPrefix(srv.URL, "https://"); len(node.Servers) != 2 || node.Servers[0] != want || node.Servers[1] != "192.0.2.1:6443" {
		t.Fatalf("servers = %v, want %s first, then the supervisor's list", node.Servers, want)
	}
	if err := WriteKubeconfigs(&node, "https://127.0.0.1:6444"); err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.LoadFromFile(node.KubeletKubeconfig)
	if err != nil || kc.Clusters["default"].Server != "https://127.0.0.1:6444" {
		t.Fatalf("kubelet kubeconfig: %v", err)
	}
	// The join is remembered: a restart with the same --server starts from
	// it without a server; another --server, or lost certificates, join first.
	if st, err := os.Stat(joinedFile(node)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v; want 0600", joinedFile(node), err)
	}
	restarted := Config{DataDir: node.DataDir, NodeName: "w1", NodeIP: node.NodeIP}
	if ok, err := loadJoined(&restarted, srv.URL); !ok || err != nil {
		t.Fatalf("loadJoined: %v, %v", ok, err)
	}
	// The service CIDR too: without it a restarted agent enforced no
	// NetworkPolicy (and its --disable cleanup failed).
	if restarted.ClusterCIDR != node.ClusterCIDR || restarted.ServiceCIDR != node.ServiceCIDR || !restarted.ClusterDNS.Equal(node.ClusterDNS) || restarted.FlannelBackend != node.FlannelBackend ||
		restarted.ClusterDomain != node.ClusterDomain || strings.Join(restarted.Servers, ",") != strings.Join(node.Servers, ",") || restarted.Certs != node.Certs {
		t.Fatalf("loadJoined = %+v, want the join's %+v", restarted, node)
	}
	if ok, err := loadJoined(&Config{DataDir: node.DataDir}, "https://192.0.2.9:6443"); ok || err != nil {
		t.Fatalf("loadJoined for another --server: %v, %v; want a join", ok, err)
	}
	// Joining again from the same machine (same node password) works.
	again := Config{DataDir: node.DataDir, NodeName: "w1", NodeIP: node.NodeIP}
	if err := Join(t.Context(), &again, srv.URL, token, log); err != nil {
		t.Fatalf("rejoin: %v", err)
	}
	// Another machine with the same name is refused with the remedy; a token
	// for another CA is refused before anything is sent.
	other := Config{DataDir: t.TempDir(), NodeName: "w1", NodeIP: node.NodeIP}
	if err := Join(t.Context(), &other, srv.URL, token, log); err == nil || !strings.Contains(err.Error(), "--node-name") {
		t.Fatalf("same name from another machine: %v", err)
	}
	// Joining again in the background: a refusal ends the agent, a join
	// hands the servers to the load balancer.
	ctx, refuse := context.WithCancelCause(t.Context())
	rejoin(ctx, Config{DataDir: t.TempDir(), NodeName: "w1", NodeIP: node.NodeIP}, srv.URL, token, func([]string) { t.Error("servers updated after a refusal") }, refuse, log)
	if err := refusal(ctx); err == nil || !strings.Contains(err.Error(), "--node-name") {
		t.Fatalf("background join from another machine: %v; want the refusal", err)
	}
	var servers []string
	remembered := Config{DataDir: node.DataDir, NodeName: "w1", NodeIP: node.NodeIP}
	if ok, err := loadJoined(&remembered, srv.URL); !ok || err != nil {
		t.Fatalf("loadJoined: %v, %v", ok, err)
	}
	ctx, refuse = context.WithCancelCause(t.Context())
	rejoin(ctx, remembered, srv.URL, token, func(s []string) { servers = s }, refuse, log)
	if err := refusal(ctx); err != nil || len(servers) != 2 {
		t.Fatalf("background join: %v, servers %v", err, servers)
	}
	// Settings that changed since the last join (here --disable) restart
	// the agent, which then starts from them.
	stale := remembered
	stale.Disabled = []string{"servicelb"}
	ctx, refuse = context.WithCancelCause(t.Context())
	rejoin(ctx, stale, srv.URL, token, func([]string) {}, refuse, log)
	if err := refusal(ctx); !errors.Is(err, upgrade.ErrRestart) {
		t.Fatalf("background join with changed settings: %v; want a restart", err)
	}
	if err := os.Remove(node.Certs.KubeletClientKey); err != nil {
		t.Fatal(err)
	}
	if ok, err := loadJoined(&Config{DataDir: node.DataDir}, srv.URL); ok || err != nil {
		t.Fatalf("loadJoined without the kubelet's key: %v, %v; want a join", ok, err)
	}
	if err := os.WriteFile(joinedFile(node), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadJoined(&Config{DataDir: node.DataDir}, srv.URL); err == nil || !strings.Contains(err.Error(), "joined.json") {
		t.Fatalf("a corrupt joined.json: %v; want an error naming it", err)
	}
	wrong := join.New([]byte("another CA"), "s3cret").String()
	if err := Join(t.Context(), &Config{DataDir: t.TempDir(), NodeName: "w2", NodeIP: node.NodeIP}, srv.URL, wrong, log); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("wrong CA hash: %v", err)
	}
}
