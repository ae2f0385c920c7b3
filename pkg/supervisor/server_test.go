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
	"sync"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kedge-io/kedge/pkg/pki"
)

// fakeMembers is an etcd member list in memory.
type fakeMembers struct {
	mu      sync.Mutex
	members []*etcdserverpb.Member
	adds    int
}

func (f *fakeMembers) MemberList(context.Context, ...clientv3.OpOption) (*clientv3.MemberListResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &clientv3.MemberListResponse{Members: append([]*etcdserverpb.Member(nil), f.members...)}, nil
}

func (f *fakeMembers) MemberAddAsLearner(_ context.Context, peers []string) (*clientv3.MemberAddResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adds++
	m := &etcdserverpb.Member{ID: uint64(len(f.members) + 1), PeerURLs: peers, IsLearner: true} // no name until it starts
	f.members = append(f.members, m)
	return &clientv3.MemberAddResponse{Member: m}, nil
}

func TestServerJoin(t *testing.T) {
	ca, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	settings := Settings{ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local", FlannelBackend: "vxlan"}
	etcd := &fakeMembers{members: []*etcdserverpb.Member{{ID: 9, Name: "s1", PeerURLs: []string{"https://192.0.2.1:2380"}}}}
	s, err := New(Config{
		CACertFile: ca.ServerCA, Secret: "s3cret", AgentSecret: "agent-s3cret", CA: ca, Settings: settings,
		NewEtcd: func() (EtcdMembers, error) { return etcd, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Wrap(http.NotFoundHandler()))
	defer srv.Close()
	join := func(user, secret string, req ServerRequest) (int, string) {
		body, _ := json.Marshal(req)
		r, _ := http.NewRequest(http.MethodPost, srv.URL+ServerPath, bytes.NewReader(body))
		r.SetBasicAuth(user, secret)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	s2 := ServerRequest{Name: "s2", PeerURL: "https://192.0.2.2:2380", ClientURL: "https://192.0.2.2:2379", Settings: settings}

	// The agent token never joins a server: a worker's token must not get
	// the cluster's CA keys.
	for _, tc := range []struct{ user, secret string }{{"server", "wrong"}, {"node", "s3cret"}, {"", ""}, {"server", "agent-s3cret"}, {"node", "agent-s3cret"}} {
		if code, body := join(tc.user, tc.secret, s2); code != http.StatusUnauthorized {
			t.Fatalf("user %q secret %q: %d %s", tc.user, tc.secret, code, body)
		}
	}
	other := s2
	other.Settings.ClusterCIDR = "10.50.0.0/16"
	code, body := join("server", "s3cret", other)
	if want := "--cluster-cidr: this server has 10.50.0.0/16, the cluster has 10.42.0.0/16"; code != http.StatusConflict || !strings.Contains(body, want) {
		t.Fatalf("other --cluster-cidr: %d %q, want 409 %q", code, body, want)
	}
	other = s2
	other.Settings.FlannelBackend = "host-gw"
	if code, body := join("server", "s3cret", other); code != http.StatusConflict || !strings.Contains(body, "--flannel-backend") {
		t.Fatalf("other --flannel-backend: %d %q", code, body)
	}
	if etcd.adds != 0 {
		t.Fatalf("refused joins added %d members", etcd.adds)
	}

	code, body = join("server", "s3cret", s2)
	if code != http.StatusOK {
		t.Fatalf("join s2: %d %s", code, body)
	}
	var answer ServerResponse
	if err := json.Unmarshal([]byte(body), &answer); err != nil {
		t.Fatal(err)
	}
	if answer.AgentSecret != "agent-s3cret" {
		t.Fatalf("a joining server got agent secret %q, want the cluster's", answer.AgentSecret)
	}
	if want := "s1=https://192.0.2.1:2380,s2=https://192.0.2.2:2380"; answer.InitialCluster != want {
		t.Fatalf("initial cluster %q, want %q", answer.InitialCluster, want)
	}
	for _, name := range []string{"server-ca.crt", "server-ca.key", "client-ca.crt", "client-ca.key", "request-header-ca.crt", "request-header-ca.key",
		"etcd/server-ca.crt", "etcd/server-ca.key", "etcd/peer-ca.crt", "etcd/peer-ca.key", "service-account.key", "service-account.pub"} {
		if len(answer.Files[name]) == 0 {
			t.Errorf("answer lacks %s", name)
		}
	}
	if len(answer.Files) != 12 {
		t.Errorf("answer has %d files, want 12 (no leaf certificates)", len(answer.Files))
	}

	// The same server again (a retry or a restart): not added twice.
	if code, body := join("server", "s3cret", s2); code != http.StatusOK || etcd.adds != 1 {
		t.Fatalf("second join of s2: %d %s, %d adds", code, body, etcd.adds)
	}
	// Another server while s2 is still a learner: told to retry (503, not
	// a refusal: servers that boot together join one after the other).
	s3 := ServerRequest{Name: "s3", PeerURL: "https://192.0.2.3:2380", ClientURL: "https://192.0.2.3:2379", Settings: settings}
	if code, body := join("server", "s3cret", s3); code != http.StatusServiceUnavailable || !strings.Contains(body, "learner") {
		t.Fatalf("s3 while s2 is a learner: %d %q", code, body)
	}
	// s2 promoted: s3 may join.
	etcd.members[1].IsLearner, etcd.members[1].Name = false, "s2"
	if code, body := join("server", "s3cret", s3); code != http.StatusOK || etcd.adds != 2 {
		t.Fatalf("s3 after s2's promotion: %d %s", code, body)
	}
	// A name taken by a member with other peer URLs: refused.
	s1 := ServerRequest{Name: "s1", PeerURL: "https://192.0.2.9:2380", ClientURL: "https://192.0.2.9:2379", Settings: settings}
	if code, body := join("server", "s3cret", s1); code != http.StatusConflict {
		t.Fatalf("s1 from another address: %d %q", code, body)
	}
}
