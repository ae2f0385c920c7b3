package metricsserver

import (
	"bytes"
	"errors"
	"io"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	builtin "github.com/kedge-io/kedge/manifests"
)

// TestManifest: manifests/metrics-server.yaml names what this package
// uses: the Service and its port, the ClusterRole that owns the APIService
// (registered by this package, not by the manifest), every binding on User.
func TestManifest(t *testing.T) {
	raw, err := builtin.FS.ReadFile("metrics-server.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var services, owners, bindings int
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		var doc struct {
			metav1.TypeMeta   `json:",inline"`
			metav1.ObjectMeta `json:"metadata"`
			Subjects          []rbacv1.Subject   `json:"subjects"`
			Spec              corev1.ServiceSpec `json:"spec"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		switch doc.Kind {
		case "APIService":
			t.Errorf("APIService %s in the manifest: registered before metrics-server serves, the aggregator logs errors", doc.Name)
		case "Service":
			services++
			p := doc.Spec.Ports
			if doc.Name != ServiceName || doc.Namespace != metav1.NamespaceSystem || len(p) != 1 || p[0].Port != 443 || p[0].Name != PortName || p[0].TargetPort.String() != PortName {
				t.Errorf("Service %s/%s: %+v", doc.Namespace, doc.Name, p)
			}
		case "ClusterRole":
			if doc.Name == OwnerClusterRole {
				owners++
			}
		case "ClusterRoleBinding", "RoleBinding":
			bindings++
			if len(doc.Subjects) != 1 || doc.Subjects[0].Kind != rbacv1.UserKind || doc.Subjects[0].Name != User {
				t.Errorf("%s %s binds %+v, want the user %s", doc.Kind, doc.Name, doc.Subjects, User)
			}
		}
	}
	if services != 1 || owners != 1 || bindings != 3 {
		t.Fatalf("%d Services, %d ClusterRoles %s, %d bindings; want 1, 1 and 3", services, owners, OwnerClusterRole, bindings)
	}
}
