package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/types"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/client-go/kubernetes"

	"github.com/kedge-io/kedge/pkg/pki"
)

// strictMembers is a fakeMembers that, like etcd, refuses a peer URL that
// is not scheme://host:port.
type strictMembers struct{ fakeMembers }

func (m *strictMembers) MemberAddAsLearner(ctx context.Context, peers []string) (*clientv3.MemberAddResponse, error) {
	if _, err := types.NewURLs(peers); err != nil {
		return nil, err
	}
	return m.fakeMembers.MemberAddAsLearner(ctx, peers)
}

// fuzzSettings are the cluster's shared settings in the server fuzz target.
var fuzzSettings = Settings{ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local", FlannelBackend: "vxlan"}

// serverSeeds are join requests of another server, real and hostile.
func serverSeeds() []string {
	settings, _ := json.Marshal(fuzzSettings)
	req := func(name, peer, client string) string {
		return `{"name":"` + name + `","peerURL":"` + peer + `","clientURL":"` + client + `","settings":` + string(settings) + `}`
	}
	return []string{
		req("s2", "https://192.0.2.2:2380", "https://192.0.2.2:2379"),
		req("s1", "https://192.0.2.1:2380", "https://192.0.2.1:2379"),
		req("s1", "https://192.0.2.9:2380", "https://192.0.2.9:2379"),
		req("s2", "https://[2001:db8::2]:2380", "https://[2001:db8::2]:2379"),
		req("s2", "https://192.0.2.2", "https://192.0.2.2:2379"),
		req("s2", "https://192.0.2.2:2380/path", "https://192.0.2.2:2379"),
		req("s2", "https://192.0.2.2:2380?a=b", "https://192.0.2.2:2379"),
		req("s2", "https://a,s9=https://evil:2380", "https://192.0.2.2:2379"),
		req("s2", "https://user:pw@192.0.2.2:2380", "https://192.0.2.2:2379"),
		req("s2", "https://192.0.2.2:99999", "https://192.0.2.2:2379"),
		req("s2", "http://192.0.2.2:2380", "https://192.0.2.2:2379"),
		req("s2", " https://192.0.2.2:2380", "https://192.0.2.2:2379"),
		req("S2", "https://192.0.2.2:2380", "https://192.0.2.2:2379"),
		`{"name":"s2","peerURL":"https://192.0.2.2:2380","clientURL":"https://192.0.2.2:2379","settings":{"clusterCIDR":"10.50.0.0/16"}}`,
		`{"name":"s2"}`,
		`{"settings":[]}`,
		`{`,
		``,
		`"s2"`,
	}
}

// FuzzServerHandler sends any body and auth to POST /v1-kedge/server with a
// working fake etcd that checks URLs as etcd does and a fake API where
// agent w1 joined: it never panics; it never answers 200 without the
// server user and the server secret (not the agent secret, nor when the
// server has no secret), nor to a server named like agent w1; it answers
// 200 or a 4xx that says why, never a 5xx: with etcd and the API up and no
// learner pending, a 5xx would make the joining server retry an input that
// cannot succeed. A 200's initial cluster parses as etcd's
// --initial-cluster and holds the new member.
func FuzzServerHandler(f *testing.F) {
	caOf := fuzzCA(f)
	tmp := fuzzTempDir(f)
	seeds := serverSeeds()
	for _, name := range []string{"w1", "W1"} {
		seeds = append(seeds, strings.Replace(seeds[0], `"s2"`, `"`+name+`"`, 1))
	}
	for _, body := range seeds {
		f.Add("server", fuzzSecret, "", []byte(body), false)
	}
	for _, auth := range []struct{ user, pass, raw string }{
		{"server", "wrong", ""}, {"node", fuzzSecret, ""}, {"", "", ""}, {"server", "", ""},
		{"", "", "Basic c2VydmVyOnMzY3JldA=="}, {"", "", "Basic c2VydmVyOnMzY3JldA"}, {"", "", "Basic"},
		{"server", fuzzAgentSecret, ""}, {"node", fuzzAgentSecret, ""},
	} {
		f.Add(auth.user, auth.pass, auth.raw, []byte(serverSeeds()[0]), false)
	}
	f.Add("server", "", "", []byte(serverSeeds()[0]), true)
	f.Fuzz(func(t *testing.T, user, pass, rawAuth string, body []byte, noSecret bool) {
		ca := caOf(t)
		secret, agentSecret := fuzzSecret, fuzzAgentSecret
		if noSecret {
			secret, agentSecret = "", ""
		}
		kube := strictClientset(nil) // w1 joined as an agent
		etcd := &strictMembers{fakeMembers{members: []*etcdserverpb.Member{{ID: 9, Name: "s1", PeerURLs: []string{"https://192.0.2.1:2380"}}}}}
		s, err := New(Config{
			CACertFile: ca.ServerCA, Secret: secret, AgentSecret: agentSecret, CA: ca, Settings: fuzzSettings,
			NewEtcd:   func() (EtcdMembers, error) { return etcd, nil },
			NewClient: func() (kubernetes.Interface, error) { return kube, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		r := fuzzRequest(http.MethodPost, ServerPath, user, pass, rawAuth, body)
		w := httptest.NewRecorder()
		s.Wrap(http.NotFoundHandler()).ServeHTTP(w, r)
		checkAnswer(t, r, w)
		switch {
		case w.Code == http.StatusOK:
			if !hasAuth(r, "server", secret) {
				t.Fatalf("200 without the server user and secret %q", secret)
			}
			checkInitialCluster(t, body, w.Body.Bytes(), agentSecret)
		case w.Code >= 500:
			t.Errorf("body %q: %d %q; want 200 or a 4xx with etcd up", body, w.Code, w.Body.String())
		}
		checkNothingLeft(t, tmp)
	})
}

// checkInitialCluster checks the answer to a server's join request body.
func checkInitialCluster(t *testing.T, body, answer []byte, agentSecret string) {
	t.Helper()
	var req ServerRequest
	var resp ServerResponse
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&req); err != nil {
		t.Fatalf("200 for a body that is not a request: %v", err)
	}
	if req.Name == "w1" {
		t.Fatalf("200 for a server named like agent w1")
	}
	if err := json.Unmarshal(answer, &resp); err != nil || len(resp.Files) != 12 || resp.AgentSecret != agentSecret {
		t.Fatalf("200 %q: want the 12 CA files and the agent secret %q (%v)", answer, agentSecret, err)
	}
	m, err := types.NewURLsMap(resp.InitialCluster)
	if err != nil {
		t.Fatalf("initial cluster %q: %v", resp.InitialCluster, err)
	}
	if got := m[req.Name].StringSlice(); len(got) != 1 || got[0] != req.PeerURL {
		t.Errorf("initial cluster %q: %s has %q, want %s", resp.InitialCluster, req.Name, got, req.PeerURL)
	}
	want := map[string]bool{"s1": true, req.Name: true}
	if len(m) != len(want) || !strings.Contains(resp.InitialCluster, "s1=https://192.0.2.1:2380") {
		t.Errorf("initial cluster %q: want s1 and %s", resp.InitialCluster, req.Name)
	}
}

// Regressions found by FuzzServerHandler: etcd URLs that etcd refuses
// (no port, a path) or that break --initial-cluster (',' and '=') were let
// through to etcd, whose refusal came back as a 503 retried forever; a
// server claiming another member's peer URL under a new name got 200 and
// an --initial-cluster that renamed that member; a supervisor without a
// secret let an empty password in.
func TestServerJoinRefusesWhatCannotSucceed(t *testing.T) {
	ca, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	settings, _ := json.Marshal(fuzzSettings)
	body := func(name, peer string) []byte {
		return []byte(`{"name":"` + name + `","peerURL":"` + peer + `","clientURL":"https://192.0.2.2:2379","settings":` + string(settings) + `}`)
	}
	for _, tc := range []struct {
		name, secret string
		body         []byte
		code         int
		want         []string
	}{
		{"no port", fuzzSecret, body("s2", "https://192.0.2.2"), http.StatusBadRequest, []string{"peerURL", "https://<IP or DNS name>:<port>"}},
		{"path", fuzzSecret, body("s2", "https://192.0.2.2:2380/x"), http.StatusBadRequest, []string{"peerURL", "e.g. https://192.0.2.2:2380"}},
		{"query", fuzzSecret, body("s2", "https://192.0.2.2:2380?a=b"), http.StatusBadRequest, []string{"peerURL"}},
		{"user", fuzzSecret, body("s2", "https://u:p@192.0.2.2:2380"), http.StatusBadRequest, []string{"peerURL"}},
		{"upper case scheme", fuzzSecret, body("s2", "HTTPS://192.0.2.2:2380"), http.StatusBadRequest, []string{"peerURL"}},
		{"comma and equals", fuzzSecret, body("s2", "https://a,s9=x:2380"), http.StatusBadRequest, []string{"peerURL", "host"}},
		{"bad port", fuzzSecret, body("s2", "https://192.0.2.2:0"), http.StatusBadRequest, []string{"peerURL", "port"}},
		{"IPv6", fuzzSecret, body("s2", "https://[2001:db8::2]:2380"), http.StatusOK, nil},
		{"DNS name", fuzzSecret, body("s2", "https://s2.example:2380"), http.StatusOK, nil},
		{"another member's peer URL", fuzzSecret, body("s9", "https://192.0.2.1:2380"), http.StatusConflict, []string{`etcd member "s1"`, "--node-name"}},
		{"the member itself", fuzzSecret, body("s1", "https://192.0.2.1:2380"), http.StatusOK, nil},
		{"no secret configured", "", body("s2", "https://192.0.2.2:2380"), http.StatusUnauthorized, []string{"secret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			etcd := &strictMembers{fakeMembers{members: []*etcdserverpb.Member{{ID: 9, Name: "s1", PeerURLs: []string{"https://192.0.2.1:2380"}}}}}
			s, err := New(Config{CACertFile: ca.ServerCA, Secret: tc.secret, CA: ca, Settings: fuzzSettings, NewEtcd: func() (EtcdMembers, error) { return etcd, nil }})
			if err != nil {
				t.Fatal(err)
			}
			r := fuzzRequest(http.MethodPost, ServerPath, "server", tc.secret, "", tc.body)
			w := httptest.NewRecorder()
			s.Wrap(http.NotFoundHandler()).ServeHTTP(w, r)
			if w.Code != tc.code {
				t.Fatalf("%d %q, want %d", w.Code, w.Body.String(), tc.code)
			}
			for _, want := range tc.want {
				if !strings.Contains(w.Body.String(), want) {
					t.Errorf("body %q lacks %q", w.Body.String(), want)
				}
			}
			if w.Code == http.StatusOK {
				checkInitialCluster(t, tc.body, w.Body.Bytes(), "")
			}
		})
	}
}
