package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ServerPath is where another server asks to join the cluster's etcd (POST,
// basic auth "server" with the token's secret).
const ServerPath = "/v1-kedge/server"

// Settings are the flags every server of a cluster must share.
type Settings struct {
	ClusterCIDR    string `json:"clusterCIDR"`
	ServiceCIDR    string `json:"serviceCIDR"`
	ClusterDNS     string `json:"clusterDNS"`
	ClusterDomain  string `json:"clusterDomain"`
	FlannelBackend string `json:"flannelBackend"`
	// Disable is --disable, sorted and comma-separated: servers that
	// disagree would apply and delete the same add-on in turn.
	Disable string `json:"disable"`
	// ServiceLBPools is --service-lb-pool, sorted and comma-separated:
	// whichever server leads allocates from them.
	ServiceLBPools string `json:"serviceLBPools"`
}

// Diff names the first flag whose value differs between a joining server
// (s) and the cluster (want), or returns "".
func (s Settings) Diff(want Settings) string {
	for _, f := range []struct{ flag, mine, theirs string }{
		{"--cluster-cidr", s.ClusterCIDR, want.ClusterCIDR},
		{"--service-cidr", s.ServiceCIDR, want.ServiceCIDR},
		{"--cluster-dns", s.ClusterDNS, want.ClusterDNS},
		{"--cluster-domain", s.ClusterDomain, want.ClusterDomain},
		{"--flannel-backend", s.FlannelBackend, want.FlannelBackend},
		{"--disable", s.Disable, want.Disable},
		{"--service-lb-pool", s.ServiceLBPools, want.ServiceLBPools},
	} {
		if f.mine != f.theirs {
			return fmt.Sprintf("%s: this server has %s, the cluster has %s", f.flag, f.mine, f.theirs)
		}
	}
	return ""
}

// ServerRequest is what a joining server sends.
type ServerRequest struct {
	Name      string   `json:"name"`      // its node name, the etcd member name
	PeerURL   string   `json:"peerURL"`   // https://<ip>:2380
	ClientURL string   `json:"clientURL"` // https://<ip>:2379
	Settings  Settings `json:"settings"`
	// Version is the joining server's Kubernetes version (v1.36.4),
	// checked against the cluster's by the skew policy; older servers send
	// none.
	Version string `json:"version,omitempty"`
}

// ServerResponse is the bootstrap data of a joining server.
type ServerResponse struct {
	// Files are the cluster's CA certificates and keys and the
	// service-account key pair: path relative to the tls dir → PEM.
	Files map[string][]byte `json:"files"`
	// InitialCluster is etcd's initial-cluster, the new member included.
	InitialCluster string `json:"initialCluster"`
	// AgentSecret is the agent token's secret, which every server accepts
	// from agents ("" on a cluster without one).
	AgentSecret string `json:"agentSecret,omitempty"`
	// EncryptionConfig is the apiserver's encryption config for Secrets
	// (its keys), absent on a cluster that does not encrypt them.
	EncryptionConfig []byte `json:"encryptionConfig,omitempty"`
}

// EtcdMembers is the part of the etcd client the supervisor uses.
type EtcdMembers interface {
	MemberList(ctx context.Context, opts ...clientv3.OpOption) (*clientv3.MemberListResponse, error)
	MemberAddAsLearner(ctx context.Context, peerAddrs []string) (*clientv3.MemberAddResponse, error)
}

// serverHandler adds a joining server to etcd as a learner and returns the
// cluster's CAs, after checking the secret and the shared settings.
func (s *Supervisor) serverHandler(w http.ResponseWriter, r *http.Request) {
	if e := s.authorize(r, "server", "the token's secret is wrong, or it is not a server's"); e != nil {
		writeAuthError(w, e)
		return
	}
	var req ServerRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if errs := validation.IsDNS1123Subdomain(req.Name); len(errs) > 0 {
		http.Error(w, fmt.Sprintf("bad server name %q", req.Name), http.StatusBadRequest)
		return
	}
	for _, u := range []struct{ field, url string }{{"peerURL", req.PeerURL}, {"clientURL", req.ClientURL}} {
		if err := checkEtcdURL(u.url); err != nil {
			http.Error(w, fmt.Sprintf("bad etcd %s %q: %v", u.field, u.url, err), http.StatusBadRequest)
			return
		}
	}
	if d := req.Settings.Diff(s.cfg.Settings); d != "" {
		http.Error(w, "refused: "+d, http.StatusConflict)
		return
	}
	if err := s.checkNotAgent(r.Context(), req.Name); err != nil {
		writeCheckError(w, err, http.StatusConflict)
		return
	}
	if !s.checkServerVersion(w, r, req) {
		return
	}
	if s.cfg.NewEtcd == nil {
		http.Error(w, "this server cannot add etcd members", http.StatusServiceUnavailable)
		return
	}
	members, err := s.cfg.NewEtcd()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	initial, err := addLearner(r.Context(), members, req)
	if err != nil {
		var c *conflictError
		if errors.As(err, &c) {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		var b *busyError
		if errors.As(err, &b) {
			// Another server's join is in progress: the joiner retries.
			w.Header().Set("Retry-After", "2")
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		http.Error(w, "etcd: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	files, err := s.caFiles()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	answer := ServerResponse{Files: files, InitialCluster: initial, AgentSecret: s.cfg.AgentSecret}
	if s.cfg.EncryptionConfigFile != "" {
		if answer.EncryptionConfig, err = os.ReadFile(s.cfg.EncryptionConfigFile); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

// checkEtcdURL reports whether u is an etcd URL in the one form etcd keeps
// and --initial-cluster can hold: https://<IP or DNS name>:<port>, nothing
// else. etcd would refuse a URL without a port or with a path only when
// the learner is added, and a ',' or '=' would break --initial-cluster.
func checkEtcdURL(u string) error {
	const want = "want https://<IP or DNS name>:<port>"
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "https" {
		return errors.New(want)
	}
	host, port, err := net.SplitHostPort(p.Host)
	if err != nil {
		return errors.New(want)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: %s", port, want)
	}
	if net.ParseIP(host) == nil && len(validation.IsDNS1123Subdomain(host)) > 0 {
		return fmt.Errorf("host %q: %s", host, want)
	}
	if canonical := "https://" + net.JoinHostPort(host, port); u != canonical {
		return fmt.Errorf("%s, e.g. %s", want, canonical)
	}
	return nil
}

// conflictError is a join refused for the cluster's state.
type conflictError struct{ msg string }

func (e *conflictError) Error() string { return e.msg }

// busyError is a join that must wait for another one to complete: etcd
// allows one learner at a time.
type busyError struct{ msg string }

func (e *busyError) Error() string { return e.msg }

// addLearner adds req as a learner unless it is a member already (a server
// that restarts, or retries a join) and returns the initial-cluster string.
func addLearner(ctx context.Context, c EtcdMembers, req ServerRequest) (string, error) {
	list, err := c.MemberList(ctx)
	if err != nil {
		return "", err
	}
	found := false
	for _, m := range list.Members {
		if m.Name == req.Name || slices.Contains(m.PeerURLs, req.PeerURL) {
			if !slices.Contains(m.PeerURLs, req.PeerURL) {
				return "", &conflictError{fmt.Sprintf("refused: etcd member %q has peer URLs %s, not %s; remove it first", m.Name, strings.Join(m.PeerURLs, ","), req.PeerURL)}
			}
			if m.Name != "" && m.Name != req.Name {
				// Another server's address under a new name (a renamed or
				// mistaken --node-name): taken as the same member, it would
				// rename that member in --initial-cluster.
				return "", &conflictError{fmt.Sprintf("refused: peer URL %s is etcd member %q's, and this server is named %q; keep that member's --node-name or remove the member first", req.PeerURL, m.Name, req.Name)}
			}
			found = true
		}
	}
	if !found {
		for _, m := range list.Members {
			if m.IsLearner {
				name := m.Name
				if name == "" {
					name = strings.Join(m.PeerURLs, ",")
				}
				return "", &busyError{fmt.Sprintf("etcd member %s is a learner not promoted yet (etcd allows one): retry when it has joined, or remove it", name)}
			}
		}
		if _, err := c.MemberAddAsLearner(ctx, []string{req.PeerURL}); err != nil {
			return "", fmt.Errorf("add learner %s: %w", req.PeerURL, err)
		}
		if list, err = c.MemberList(ctx); err != nil {
			return "", err
		}
	}
	var parts []string
	for _, m := range list.Members {
		name := m.Name
		if slices.Contains(m.PeerURLs, req.PeerURL) {
			name = req.Name // a learner that has not started has no name yet
		}
		if name == "" {
			continue
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, name+"="+u)
		}
	}
	return strings.Join(parts, ","), nil
}

// caFiles reads the CAs and the service-account key pair, keyed by their
// path relative to the tls dir.
func (s *Supervisor) caFiles() (map[string][]byte, error) {
	b := s.cfg.CA
	out := map[string][]byte{}
	for _, p := range []string{
		b.ServerCA, b.ServerCAKey, b.ClientCA, b.ClientCAKey, b.RequestHeaderCA, b.RequestHeaderCAKey,
		b.EtcdServerCA, b.EtcdServerCAKey, b.EtcdPeerCA, b.EtcdPeerCAKey, b.ServiceAccountKey, b.ServiceAccountPub,
	} {
		rel, err := filepath.Rel(b.Dir, p)
		if err != nil {
			return nil, err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out[filepath.ToSlash(rel)] = data
	}
	// During and after a CA rotation: the cross certificates, which the
	// joining server's leaves carry for the peers that trust only the
	// old CAs.
	for _, p := range b.CrossFiles() {
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		rel, err := filepath.Rel(b.Dir, p)
		if err != nil {
			return nil, err
		}
		out[filepath.ToSlash(rel)] = data
	}
	return out, nil
}
