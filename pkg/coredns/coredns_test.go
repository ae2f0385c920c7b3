package coredns

import (
	"net"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestCorefile(t *testing.T) {
	got := Corefile(Config{NodeIP: net.ParseIP("192.0.2.5"), ClusterDomain: "example.internal", Kubeconfig: "/k/dns.kubeconfig", ResolvConf: "/run/resolv.conf"})
	for _, want := range []string{
		".:53 {", "bind 192.0.2.5", "ready " + ReadyAddress, "health " + HealthAddress,
		"kubernetes example.internal in-addr.arpa ip6.arpa {", "kubeconfig /k/dns.kubeconfig",
		"forward . /run/resolv.conf", "cache 30", "loop",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Corefile lacks %q:\n%s", want, got)
		}
	}
}

func TestPublishEndpoint(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "uid-1"}}
	client := fake.NewClientset(node)
	cfg := Config{NodeName: "n1", NodeIP: net.ParseIP("192.0.2.5")}
	for i := 0; i < 2; i++ { // create, then update
		if err := PublishEndpoint(t.Context(), client, cfg); err != nil {
			t.Fatal(err)
		}
	}
	s, err := client.DiscoveryV1().EndpointSlices("kube-system").Get(t.Context(), "kube-dns-n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Labels[discoveryv1.LabelServiceName] != ServiceName || s.Endpoints[0].Addresses[0] != "192.0.2.5" ||
		*s.Endpoints[0].NodeName != "n1" || s.OwnerReferences[0].UID != "uid-1" || len(s.Ports) != 2 {
		t.Fatalf("slice = %+v", s)
	}
}
