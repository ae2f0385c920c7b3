package manifests

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	builtin "github.com/kedge-io/kedge/manifests"
)

// TestBuiltinClusterRolesAreReadOnly: the built-in ClusterRoles are bound to
// identities every node holds (system:nodes, system:kedge-coredns), so they
// grant reads only. A cluster-wide write would reach beyond the node: with
// create on endpointslices, any node could add endpoints to any Service, the
// apiserver's kubernetes Service included. CoreDNS writes its node's
// kube-dns EndpointSlice through a Role in kube-system.
func TestBuiltinClusterRolesAreReadOnly(t *testing.T) {
	docs, err := Render(builtin.FS, Values{ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	read := []string{"get", "list", "watch"}
	// The one write: nodes patch PersistentVolumes, which the
	// ValidatingAdmissionPolicy of the same manifest narrows to removing
	// local storage's finalizer from their own volumes being deleted.
	guarded := map[string]string{"kedge:local-storage": "kedge-local-storage-nodes"}
	policies := map[string]bool{} // ValidatingAdmissionPolicy and Binding names, by kind
	var clusterRoles, coreDNSRole int
	for name, doc := range docs {
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(doc), 4096)
		for {
			var role rbacv1.ClusterRole // a Role has the same fields
			if err := dec.Decode(&role); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			switch role.Kind {
			case "ClusterRole":
				clusterRoles++
				for _, r := range role.Rules {
					for _, v := range r.Verbs {
						if guarded[role.Name] != "" && v == "patch" && slices.Equal(r.Resources, []string{"persistentvolumes"}) {
							continue // checked below: the policy must be there
						}
						if !slices.Contains(read, v) {
							t.Errorf("%s: ClusterRole %s grants %s on %v", name, role.Name, v, r.Resources)
						}
					}
				}
			case "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
				policies[role.Kind+"/"+role.Name] = true
			case "Role":
				if role.Name == "kedge:coredns" && role.Namespace == "kube-system" {
					coreDNSRole++
				}
			}
		}
	}
	for role, policy := range guarded {
		if !policies["ValidatingAdmissionPolicy/"+policy] || !policies["ValidatingAdmissionPolicyBinding/"+policy] {
			t.Errorf("ClusterRole %s writes, and the ValidatingAdmissionPolicy %s or its binding that narrows it is missing", role, policy)
		}
	}
	if clusterRoles < 2 || coreDNSRole != 1 {
		t.Fatalf("%d ClusterRoles, %d kube-system Role kedge:coredns; want kedge:coredns and kedge:flannel, and the Role", clusterRoles, coreDNSRole)
	}
}
