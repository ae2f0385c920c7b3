package supervisor

import (
	"net/http"

	"github.com/kedge-io/kedge/pkg/skew"
)

// checkAgentVersion applies the skew policy to a joining agent that sent
// its version: a kubelet newer than every server, or too old, is refused
// (409, a definite refusal the agent does not retry) naming both versions.
// Without Config.Versions, a version or a record, nothing is checked.
func (s *Supervisor) checkAgentVersion(w http.ResponseWriter, r *http.Request, req NodeRequest) bool {
	if s.cfg.Versions == nil || !skew.Valid(req.Version) {
		return true
	}
	servers, _, err := s.cfg.Versions(r.Context())
	if err != nil {
		http.Error(w, "reading the servers' versions: "+err.Error(), http.StatusServiceUnavailable)
		return false
	}
	warning, err := skew.CheckAgent(req.Name, req.Version, servers)
	if err != nil {
		http.Error(w, "refused: "+err.Error(), http.StatusConflict)
		return false
	}
	if warning != "" && s.cfg.Log != nil {
		s.cfg.Log.Warn(warning, "component", "supervisor")
	}
	return true
}

// checkServerVersion applies the skew policy to a joining server that sent
// its version: two minors away from any server, or older than the
// datastore, is refused (409) naming both versions.
func (s *Supervisor) checkServerVersion(w http.ResponseWriter, r *http.Request, req ServerRequest) bool {
	if s.cfg.Versions == nil || !skew.Valid(req.Version) {
		return true
	}
	servers, datastore, err := s.cfg.Versions(r.Context())
	if err != nil {
		http.Error(w, "reading the servers' versions: "+err.Error(), http.StatusServiceUnavailable)
		return false
	}
	if err := skew.CheckServer(req.Name, req.Version, servers, datastore); err != nil {
		http.Error(w, "refused: "+err.Error(), http.StatusConflict)
		return false
	}
	return true
}
