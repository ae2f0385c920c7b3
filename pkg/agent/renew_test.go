package agent

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kedge-io/kedge/pkg/certs"
	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/supervisor"
)

// TestRenewThroughSupervisor: an agent that joined renews its certificates
// from a real supervisor over TLS with its kubelet client certificate (no
// token), on a `kedge certificate rotate` request.
func TestRenewThroughSupervisor(t *testing.T) {
	ca, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	sup, err := supervisor.New(supervisor.Config{
		CACertFile: ca.ServerCA, Secret: "s3cret", CA: ca,
		Cluster:   supervisor.Cluster{ClusterCIDR: "10.42.0.0/16", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local", FlannelBackend: "host-gw"},
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
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	defer srv.Close()
	caPEM, _ := os.ReadFile(ca.ServerCA)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	node := Config{DataDir: t.TempDir(), NodeName: "w1", NodeIP: net.ParseIP("127.0.0.1")}
	if err := Join(t.Context(), &node, srv.URL, join.New(caPEM, "s3cret").String(), log); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(node.Certs.KubeletServingCert)
	req, err := certs.WriteRequest(node.DataDir, []string{"kubelet"})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRenewer(node, strings.TrimPrefix(srv.URL, "https://"), log)
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Stop(context.Background()) }()
	res, err := certs.ReadResult(node.DataDir, req.ID)
	if err != nil || res == nil || res.Error != "" {
		t.Fatalf("result %+v, %v", res, err)
	}
	reasons := map[string]string{}
	for _, is := range res.Issued {
		reasons[is.File] = is.Reason
	}
	if reasons[node.Certs.KubeletServingCert] != "rotation requested" || reasons[node.Certs.KubeletClientCert] != "rotation requested" || len(reasons) != 4 {
		t.Fatalf("issued %v", res.Issued)
	}
	if after, _ := os.ReadFile(node.Certs.KubeletServingCert); string(after) == string(before) {
		t.Fatal("kubelet-serving.crt unchanged")
	}
	if _, err := tls.LoadX509KeyPair(node.Certs.KubeletClientCert, node.Certs.KubeletClientKey); err != nil {
		t.Fatalf("renewed kubelet client pair: %v", err)
	}

	// A renewal that keeps the keys: the supervisor signs the public keys
	// and sends no key file; the certificates match the node's keys.
	pub, err := pki.PublicKeyPEM(node.Certs.KubeletServingKey)
	if err != nil {
		t.Fatal(err)
	}
	files, err := requestNodeCerts(t.Context(), node, strings.TrimPrefix(srv.URL, "https://"), map[string]string{"kubelet-serving.crt": string(pub)})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := files["kubelet-serving.key"]; ok || len(files["kubelet-serving.crt"]) == 0 || len(files["kube-proxy.key"]) == 0 {
		t.Fatalf("answer files %v: want kubelet-serving.crt without its key, the others with theirs", keys(files))
	}
	keyPEM, _ := os.ReadFile(node.Certs.KubeletServingKey)
	if _, err := tls.X509KeyPair(files["kubelet-serving.crt"], keyPEM); err != nil {
		t.Fatalf("the certificate issued for the kept key: %v", err)
	}
	if _, err := requestNodeCerts(t.Context(), node, strings.TrimPrefix(srv.URL, "https://"), map[string]string{"admin.crt": string(pub)}); err == nil || !strings.Contains(err.Error(), "not a node certificate") {
		t.Fatalf("a public key for another certificate: %v", err)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
