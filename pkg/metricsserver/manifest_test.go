package metricsserver

import (
	"bytes"
	"errors"
	"io"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"

	builtin "github.com/kedge-io/kedge/manifests"
)

// TestManifest: manifests/metrics-server.yaml names what this package
// uses: the APIService on the Service and port, and every binding on User.
func TestManifest(t *testing.T) {
	raw, err := builtin.FS.ReadFile("metrics-server.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var apiServices, bindings int
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		var doc struct {
			metav1.TypeMeta   `json:",inline"`
			metav1.ObjectMeta `json:"metadata"`
			Subjects          []rbacv1.Subject        `json:"subjects"`
			APIService        apiregv1.APIServiceSpec `json:"spec"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		switch doc.Kind {
		case "APIService":
			apiServices++
			s := doc.APIService
			if doc.Name != APIServiceName || s.Service == nil || s.Service.Name != ServiceName || s.Service.Namespace != metav1.NamespaceSystem || s.InsecureSkipTLSVerify || len(s.CABundle) != 0 {
				t.Errorf("APIService %s: %+v", doc.Name, s)
			}
		case "ClusterRoleBinding", "RoleBinding":
			bindings++
			if len(doc.Subjects) != 1 || doc.Subjects[0].Kind != rbacv1.UserKind || doc.Subjects[0].Name != User {
				t.Errorf("%s %s binds %+v, want the user %s", doc.Kind, doc.Name, doc.Subjects, User)
			}
		}
	}
	if apiServices != 1 || bindings != 3 {
		t.Fatalf("%d APIServices, %d bindings; want 1 and 3", apiServices, bindings)
	}
}
