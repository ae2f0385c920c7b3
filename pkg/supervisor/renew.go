package supervisor

import (
	"crypto"
	"fmt"
	"slices"

	"github.com/kedge-io/kedge/pkg/pki"
)

// NodeUserPrefix and NodesGroup are the subject of a kubelet's client
// certificate, as the Node authorizer expects it.
const (
	NodeUserPrefix = "system:node:"
	NodesGroup     = "system:nodes"
)

// nodePublicKeys parses a NodeRequest's PublicKeys: each name must be one
// of a node's certificates.
func nodePublicKeys(in map[string]string) (map[string]crypto.PublicKey, error) {
	if len(in) == 0 {
		return nil, nil
	}
	b := pki.NodeLayout("")
	names := []string{b.KubeletClientCert, b.KubeletServingCert, b.KubeProxyCert, b.CoreDNSCert}
	out := map[string]crypto.PublicKey{}
	for name, data := range in {
		if !slices.Contains(names, name) {
			return nil, fmt.Errorf("publicKeys: %q is not a node certificate (want one of %v)", name, names)
		}
		pub, err := pki.ParsePublicKey([]byte(data))
		if err != nil {
			return nil, fmt.Errorf("publicKeys: %s: %w", name, err)
		}
		out[name] = pub
	}
	return out, nil
}
