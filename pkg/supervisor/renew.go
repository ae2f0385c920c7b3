package supervisor

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"slices"

	"github.com/kedge-io/kedge/pkg/pki"
)

// NodeUserPrefix and NodesGroup are the subject of a kubelet's client
// certificate, as the Node authorizer expects it.
const (
	NodeUserPrefix = "system:node:"
	NodesGroup     = "system:nodes"
)

// checkNodeCert reports whether r's TLS client certificate is a node
// certificate of node name, signed by the cluster's client CA and valid
// now. The apiserver's TLS server asks for client certificates without
// verifying them (its authenticator does); this is that check for the
// supervisor's renewal path.
func (s *Supervisor) checkNodeCert(r *http.Request, name string) error {
	caPEM, err := os.ReadFile(s.cfg.CA.ClientCA)
	if err != nil {
		return fmt.Errorf("client CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("client CA %s: no certificate", s.cfg.CA.ClientCA)
	}
	peer := r.TLS.PeerCertificates
	inter := x509.NewCertPool()
	for _, c := range peer[1:] {
		inter.AddCert(c)
	}
	leaf := peer[0]
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := leaf.Verify(opts); err != nil {
		return fmt.Errorf("the client certificate is not valid for the cluster's client CA: %w", err)
	}
	if leaf.Subject.CommonName != NodeUserPrefix+name || !slices.Contains(leaf.Subject.Organization, NodesGroup) {
		return fmt.Errorf("the client certificate (CN=%s) is not node %s's", leaf.Subject.CommonName, name)
	}
	return nil
}

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
