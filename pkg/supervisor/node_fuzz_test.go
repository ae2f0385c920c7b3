package supervisor

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kedge-io/kedge/pkg/pki"
)

// fuzzNodePassword is the node password of "w1", which joined before.
const fuzzNodePassword = "0123456789abcdef0123"

// strictClientset returns a fake API that, like the apiserver, refuses a
// Secret whose name is not a DNS subdomain, and holds the password hash of
// node w1.
func strictClientset(hash []byte) *fake.Clientset {
	kube := fake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: passwordSecret("w1"), Namespace: metav1.NamespaceSystem},
		Data:       map[string][]byte{"hash": hash},
	})
	kube.PrependReactor("create", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		name := a.(k8stesting.CreateAction).GetObject().(*corev1.Secret).Name
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return true, nil, apierrors.NewInvalid(schema.GroupKind{Kind: "Secret"}, name,
				field.ErrorList{field.Invalid(field.NewPath("metadata", "name"), name, strings.Join(errs, "; "))})
		}
		return false, nil, nil
	})
	return kube
}

// nodeSeeds are join requests of an agent, real and hostile.
func nodeSeeds() []string {
	long := strings.Repeat("a", 63)
	return []string{
		`{"name":"w1","password":"` + fuzzNodePassword + `","ips":["192.0.2.7"]}`,
		`{"name":"w2","password":"another-machine-password","ips":["192.0.2.8","2001:db8::8"]}`,
		`{"name":"w1","password":"another-machine-password"}`,
		`{"name":"w3","password":"short"}`,
		`{"name":"s1","password":"0123456789abcdef0123"}`,
		`{"name":"Bad_Name","password":"0123456789abcdef0123"}`,
		`{"name":"` + long + `.` + long + `.` + long + `.` + long[:50] + `","password":"0123456789abcdef0123"}`,
		`{"name":"w4","password":"` + strings.Repeat("p", 80) + `"}`,
		`{"name":"w5","password":"0123456789abcdef0123","ips":["not-an-ip"]}`,
		`{"name":"w6","password":"0123456789abcdef0123","ips":["fe80::1%eth0"]}`,
		`{"name":"w7","password":"0123456789abcdef0123","ips":null}`,
		`{"name":1}`,
		`{"name":"w1"`,
		`[]`,
		`null`,
		``,
		`{"name":"w8","password":"0123456789abcdef0123"} trailing`,
		`{"name":"w9","password":"0123456789abcdef\u00000123"}`,
		`{"name":"` + strings.Repeat("x", 70000) + `"}`,
	}
}

// FuzzNodeHandler sends any body and auth to POST /v1-kedge/node with a
// working fake API and a fake etcd whose member is server s1: it never
// panics, never answers 200 without the node user and the server or agent
// secret (nor when the server has no secret), nor to an agent named like
// server s1, and answers 200
// or a 4xx that says why, never a 5xx: with the API up, a 5xx would make
// the agent retry an input that cannot succeed. A 200 holds certificates.
func FuzzNodeHandler(f *testing.F) {
	caOf := fuzzCA(f)
	tmp := fuzzTempDir(f)
	hash, err := bcrypt.GenerateFromPassword([]byte(fuzzNodePassword), bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	for _, body := range nodeSeeds() {
		f.Add("node", fuzzSecret, "", []byte(body), false)
	}
	for _, auth := range []struct{ user, pass, raw string }{
		{"node", "wrong", ""}, {"server", fuzzSecret, ""}, {"", "", ""}, {"node", "", ""},
		{"", "", "Basic " + "bm9kZTpzM2NyZXQ="}, {"", "", "Basic bm9kZTpzM2NyZXQ"}, {"", "", "Basic !!"},
		{"", "", "Bearer s3cret"}, {"", "", "basic bm9kZTpzM2NyZXQ="}, {"node", fuzzSecret + "\x00", ""},
		{"node", fuzzAgentSecret, ""}, {"server", fuzzAgentSecret, ""},
	} {
		f.Add(auth.user, auth.pass, auth.raw, []byte(nodeSeeds()[0]), false)
	}
	f.Add("node", "", "", []byte(nodeSeeds()[1]), true)
	f.Fuzz(func(t *testing.T, user, pass, rawAuth string, body []byte, noSecret bool) {
		ca := caOf(t)
		secret, agentSecret := fuzzSecret, fuzzAgentSecret
		if noSecret {
			secret, agentSecret = "", ""
		}
		kube := strictClientset(hash)
		etcd := &fakeMembers{members: []*etcdserverpb.Member{{ID: 9, Name: "s1", PeerURLs: []string{"https://192.0.2.1:2380"}}}}
		s, err := New(Config{
			NewEtcd:    func() (EtcdMembers, error) { return etcd, nil },
			CACertFile: ca.ServerCA, Secret: secret, AgentSecret: agentSecret, CA: ca,
			Cluster:   Cluster{ClusterCIDR: "10.42.0.0/16", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local", Servers: []string{"https://192.0.2.1:6443"}},
			NewClient: func() (kubernetes.Interface, error) { return kube, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		r := fuzzRequest(http.MethodPost, NodePath, user, pass, rawAuth, body)
		w := httptest.NewRecorder()
		s.Wrap(http.NotFoundHandler()).ServeHTTP(w, r)
		checkAnswer(t, r, w)
		switch {
		case w.Code == http.StatusOK:
			if !hasAuth(r, "node", secret) && !hasAuth(r, "node", agentSecret) {
				t.Fatalf("200 without the node user and secret %q or agent secret %q", secret, agentSecret)
			}
			var resp NodeResponse
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || len(resp.Files["kubelet-client.crt"]) == 0 {
				t.Errorf("200 %q: want certificates (%v)", w.Body.String(), err)
			}
			var req NodeRequest
			if err := json.NewDecoder(bytes.NewReader(body)).Decode(&req); err != nil || req.Name == "s1" {
				t.Errorf("200 for the request %q (%v): not one, or an agent named like server s1", body, err)
			}
		case w.Code >= 500:
			t.Errorf("body %q: %d %q; want 200 or a 4xx with a working API", body, w.Code, w.Body.String())
		}
		checkNothingLeft(t, tmp)
	})
}

// Regressions found by FuzzNodeHandler: a node name too long for its
// password Secret and a password longer than bcrypt reads were answered
// 503, so the agent retried them forever; a supervisor without a secret
// let an empty password in.
func TestNodeJoinRefusesWhatCannotSucceed(t *testing.T) {
	ca, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	newSupervisor := func(secret string) *Supervisor {
		kube := strictClientset(nil)
		s, err := New(Config{CACertFile: ca.ServerCA, Secret: secret, CA: ca, NewClient: func() (kubernetes.Interface, error) { return kube, nil }})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	long := strings.Repeat("a", 63)
	name234 := long + "." + long + "." + long + "." + long[:42]
	for _, tc := range []struct {
		name, secret, pass, body string
		code                     int
		want                     []string
	}{
		{"name too long for its Secret", fuzzSecret, fuzzSecret, `{"name":"` + name234 + `","password":"0123456789abcdef0123"}`,
			http.StatusBadRequest, []string{"--node-name", "234 characters, at most 233"}},
		{"longest name", fuzzSecret, fuzzSecret, `{"name":"` + name234[1:] + `","password":"0123456789abcdef0123"}`, http.StatusOK, nil},
		{"password too long", fuzzSecret, fuzzSecret, `{"name":"w1","password":"` + strings.Repeat("p", 73) + `"}`,
			http.StatusBadRequest, []string{"node password", "73 bytes, want 16 to 72"}},
		{"password too short", fuzzSecret, fuzzSecret, `{"name":"w1","password":"short"}`, http.StatusBadRequest, []string{"node password", "5 bytes"}},
		{"bad name", fuzzSecret, fuzzSecret, `{"name":"Bad_Name","password":"0123456789abcdef0123"}`, http.StatusBadRequest, []string{"--node-name", "Bad_Name"}},
		{"no secret configured", "", "", `{"name":"w1","password":"0123456789abcdef0123"}`, http.StatusUnauthorized, []string{"secret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := fuzzRequest(http.MethodPost, NodePath, "node", tc.pass, "", []byte(tc.body))
			w := httptest.NewRecorder()
			newSupervisor(tc.secret).Wrap(http.NotFoundHandler()).ServeHTTP(w, r)
			if w.Code != tc.code {
				t.Fatalf("%d %q, want %d", w.Code, w.Body.String(), tc.code)
			}
			for _, want := range tc.want {
				if !strings.Contains(w.Body.String(), want) {
					t.Errorf("body %q lacks %q", w.Body.String(), want)
				}
			}
		})
	}
}
