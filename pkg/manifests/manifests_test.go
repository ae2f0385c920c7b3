package manifests

import (
	"strings"
	"testing"
	"testing/fstest"

	builtin "github.com/kedge-io/kedge/manifests"
)

func TestRenderBuiltins(t *testing.T) {
	docs, err := Render(builtin.FS, Values{ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	dns := string(docs["coredns.yaml"])
	for _, want := range []string{"clusterIP: 10.43.0.10", "internalTrafficPolicy: Local", "name: system:kedge-coredns"} {
		if !strings.Contains(dns, want) {
			t.Errorf("coredns.yaml lacks %q", want)
		}
	}
	fl := string(docs["flannel.yaml"])
	for _, want := range []string{"name: kedge:flannel", "verbs: [list, watch]", "kind: Group", "name: system:nodes"} {
		if !strings.Contains(fl, want) {
			t.Errorf("flannel.yaml lacks %q", want)
		}
	}
}

func TestRenderMissingValueIsAnError(t *testing.T) {
	_, err := Render(fstest.MapFS{"x.yaml": {Data: []byte("a: {{ .Nope }}")}}, Values{})
	if err == nil || !strings.Contains(err.Error(), "x.yaml") {
		t.Fatalf("err = %v, want one naming x.yaml", err)
	}
}
