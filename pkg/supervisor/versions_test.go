package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kedge-io/kedge/pkg/pki"
)

// TestJoinVersionSkew: joining agents and servers that send their
// Kubernetes version are checked against the servers' recorded versions;
// a refusal is a 409 naming both versions, and a node that sends no
// version (an older kedge) is not checked.
func TestJoinVersionSkew(t *testing.T) {
	ca, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	settings := Settings{ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local", FlannelBackend: "vxlan"}
	etcd := &fakeMembers{members: []*etcdserverpb.Member{{ID: 9, Name: "s1", PeerURLs: []string{"https://192.0.2.1:2380"}}}}
	kube := fake.NewClientset()
	servers := map[string]string{"s1": "v1.36.4"}
	datastore := "v1.36.4"
	s, err := New(Config{
		CACertFile: ca.ServerCA, Secret: "s3cret", CA: ca, Settings: settings,
		Cluster:   Cluster{ClusterCIDR: "10.42.0.0/16", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local"},
		NewEtcd:   func() (EtcdMembers, error) { return etcd, nil },
		NewClient: func() (kubernetes.Interface, error) { return kube, nil },
		Versions: func(context.Context) (map[string]string, string, error) {
			return servers, datastore, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Wrap(http.NotFoundHandler()))
	defer srv.Close()
	post := func(path, user string, req any) (int, string) {
		body, _ := json.Marshal(req)
		r, _ := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(body))
		r.SetBasicAuth(user, "s3cret")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	agent := func(v string) (int, string) {
		return post(NodePath, "node", NodeRequest{Name: "w1", Password: "0123456789abcdef0123", IPs: []string{"192.0.2.7"}, Version: v})
	}
	server := func(name, v string) (int, string) {
		return post(ServerPath, "server", ServerRequest{Name: name, PeerURL: "https://192.0.2.2:2380", ClientURL: "https://192.0.2.2:2379", Settings: settings, Version: v})
	}

	for _, tc := range []struct {
		what string
		code int
		body string
		do   func() (int, string)
	}{
		{"agent at the servers' version", http.StatusOK, "", func() (int, string) { return agent("v1.36.1") }},
		{"agent of an older kedge (no version)", http.StatusOK, "", func() (int, string) { return agent("") }},
		{"agent newer than every server", http.StatusConflict, "agent w1 runs Kubernetes v1.37.2, newer than every server (the newest, s1, runs v1.36.4)", func() (int, string) { return agent("v1.37.2") }},
		{"agent four minors older", http.StatusConflict, "more than 3 minor versions older than server s1 (v1.36.4)", func() (int, string) { return agent("v1.32.9") }},
		{"server two minors newer", http.StatusConflict, "server s2 runs Kubernetes v1.38.0 and server s1 runs v1.36.4", func() (int, string) { return server("s2", "v1.38.0") }},
		{"server one minor newer", http.StatusOK, "", func() (int, string) { return server("s2", "v1.37.2") }},
	} {
		code, body := tc.do()
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("%s: %d %q, want %d %q", tc.what, code, body, tc.code, tc.body)
		}
	}

	// After the upgrade of s1 the datastore is at 1.37: an older server is
	// refused, a newer agent is now fine.
	servers["s1"], servers["s2"], datastore = "v1.37.2", "v1.37.2", "v1.37.2"
	if code, body := server("s3", "v1.36.4"); code != http.StatusConflict || !strings.Contains(body, "downgrade is refused") {
		t.Errorf("old server after the upgrade: %d %q", code, body)
	}
	if code, body := agent("v1.37.2"); code != http.StatusOK {
		t.Errorf("agent after the upgrade: %d %q", code, body)
	}
}
