package supervisor

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
)

// CABundlesPath serves the cluster's current trust bundles to nodes (GET,
// no authentication: they are public; a node reads them over TLS verified
// against the CA it holds). An agent compares them with its copies in
// <data-dir>/agent/tls on every certificate check and, when they changed
// (`kedge certificate rotate-ca`), stores them and renews its leaves with
// the new CA.
const CABundlesPath = "/v1-kedge/ca-bundles"

// CABundles is the answer of CABundlesPath: PEM bundles by the file names
// of pki.NodeLayout (server-ca.crt verifies the apiservers and kubelets,
// client-ca.crt the clients).
type CABundles struct {
	Files map[string][]byte `json:"files"`
}

// caBundlesHandler serves the server and client CA bundles, read per request.
func (s *Supervisor) caBundlesHandler(w http.ResponseWriter, _ *http.Request) {
	answer := CABundles{Files: map[string][]byte{}}
	for _, path := range []string{s.cfg.CA.ServerCA, s.cfg.CA.ClientCA} {
		data, err := os.ReadFile(path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		answer.Files[filepath.Base(path)] = data
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}
