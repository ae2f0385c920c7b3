package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kedge-io/kedge/pkg/pki"
)

// downMembers is an etcd that does not answer.
type downMembers struct{ fakeMembers }

func (*downMembers) MemberList(context.Context, ...clientv3.OpOption) (*clientv3.MemberListResponse, error) {
	return nil, errors.New("etcd is down")
}

// TestNamesOfTheOtherRole: with the join secret, an agent cannot get the
// certificates of a server's node (a name of an etcd member), and a server
// cannot join under the name of a node that joined as an agent.
func TestNamesOfTheOtherRole(t *testing.T) {
	ca, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	settings := Settings{ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local", FlannelBackend: "vxlan"}
	var etcd EtcdMembers = &fakeMembers{members: []*etcdserverpb.Member{{ID: 9, Name: "s1", PeerURLs: []string{"https://192.0.2.1:2380"}}}}
	kube := fake.NewClientset()
	s, err := New(Config{
		CACertFile: ca.ServerCA, Secret: "s3cret", CA: ca, Settings: settings,
		Cluster:   Cluster{ClusterCIDR: "10.42.0.0/16", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local", Servers: []string{"https://192.0.2.1:6443"}},
		NewClient: func() (kubernetes.Interface, error) { return kube, nil },
		NewEtcd:   func() (EtcdMembers, error) { return etcd, nil },
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
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300)) // enough for a refusal, not a bundle
		return resp.StatusCode, string(b)
	}
	node := func(name string) NodeRequest {
		return NodeRequest{Name: name, Password: "0123456789abcdef0123", IPs: []string{"192.0.2.7"}}
	}

	code, body := post(NodePath, "node", node("s1"))
	if code != http.StatusForbidden || !strings.Contains(body, "server") || !strings.Contains(body, "--node-name") {
		t.Fatalf("agent named after server s1: %d %q; want 403 naming --node-name", code, body)
	}
	if list, _ := kube.CoreV1().Secrets(metav1.NamespaceSystem).List(context.Background(), metav1.ListOptions{}); len(list.Items) != 0 {
		t.Fatalf("a refused join left %d node password Secrets", len(list.Items))
	}
	if code, body := post(NodePath, "node", node("w1")); code != http.StatusOK {
		t.Fatalf("agent w1: %d %q", code, body)
	}

	server := func(name, ip string) ServerRequest {
		return ServerRequest{Name: name, PeerURL: "https://" + ip + ":2380", ClientURL: "https://" + ip + ":2379", Settings: settings}
	}
	code, body = post(ServerPath, "server", server("w1", "192.0.2.7"))
	if code != http.StatusConflict || !strings.Contains(body, "agent") || !strings.Contains(body, passwordSecret("w1")) {
		t.Fatalf("server named after agent w1: %d %q; want 409 naming the Secret", code, body)
	}
	if code, body := post(ServerPath, "server", server("s2", "192.0.2.2")); code != http.StatusOK {
		t.Fatalf("server s2: %d %q", code, body)
	}

	// etcd not answering: the agent is told to retry, not refused.
	etcd = &downMembers{}
	if code, body := post(NodePath, "node", node("w2")); code != http.StatusServiceUnavailable {
		t.Fatalf("agent w2 with etcd down: %d %q; want 503", code, body)
	}
}
