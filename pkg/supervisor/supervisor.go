// Package supervisor serves kedge's join API on the apiserver's own port
// (6443), in front of the apiserver's handler: a node that wants to join
// first fetches the cluster CA from /cacerts — unauthenticated, since it has
// no trust yet — checks it against the hash in its token, and only then
// talks TLS-verified to the rest: an agent POSTs /v1-kedge/node for its
// certificates, another server POSTs /v1-kedge/server to be added to etcd as
// a learner and get the cluster's CAs. Every other path goes to the apiserver.
//
//	s, err := supervisor.New(supervisor.Config{CACertFile: bundle.ServerCA})
//	apiserverCfg.Wrap = s.Wrap
package supervisor

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kedge-io/kedge/pkg/pki"
)

// Paths served without authentication.
const (
	CACertsPath = "/cacerts"
	PingPath    = "/ping"
)

// Config describes the supervisor of one server.
type Config struct {
	// CACertFile is the cluster (server) CA bundle, the CA that signs the
	// apiserver's serving certificate; /cacerts serves its exact bytes (the
	// bytes a join token's hash is computed over).
	CACertFile string
	// Secret is the join token's secret (<data-dir>/server/token), the
	// password of servers and agents.
	Secret string
	// AgentSecret is the agent token's secret (<data-dir>/server/agent-token):
	// it joins agents only, so that a token handed to every worker cannot
	// join a server and get the cluster's CA keys. Empty: agents use Secret.
	AgentSecret string
	// CA are the cluster's CAs, which sign the certificates of joining nodes.
	CA pki.Bundle
	// Cluster are the settings every node must share.
	Cluster Cluster
	// NewClient returns an admin API client (node passwords are Secrets).
	NewClient func() (kubernetes.Interface, error)
	// Settings are the flags a joining server must share with this one.
	Settings Settings
	// NewEtcd returns a client of the local etcd member, which adds joining
	// servers as learners; it is called per join and may return a shared client.
	NewEtcd func() (EtcdMembers, error)
	// CertValidity is how long node certificates are valid; 0: one year.
	CertValidity time.Duration
}

// Supervisor is the join API's HTTP front.
type Supervisor struct {
	cfg   Config
	caPEM []byte

	mu   sync.Mutex
	kube kubernetes.Interface
}

// New reads the CA bundle once.
func New(cfg Config) (*Supervisor, error) {
	ca, err := os.ReadFile(cfg.CACertFile)
	if err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	return &Supervisor{cfg: cfg, caPEM: ca}, nil
}

// Wrap returns a handler that serves the supervisor's paths and hands every
// other request to next (the apiserver, with its own authentication).
func (s *Supervisor) Wrap(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+CACertsPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(s.caPEM)
	})
	mux.HandleFunc("GET "+PingPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("pong"))
	})
	mux.HandleFunc("POST "+NodePath, s.nodeHandler)
	mux.HandleFunc("POST "+ServerPath, s.serverHandler)
	mux.Handle("/", next)
	return mux
}

// authorized reports whether r carries the basic auth user and the join
// secret, or for user "node" the agent secret. A supervisor without a
// secret authorizes nobody: an empty password must not open the join API.
func (s *Supervisor) authorized(r *http.Request, user string) bool {
	u, p, ok := r.BasicAuth()
	if !ok || u != user {
		return false
	}
	if s.cfg.Secret != "" && subtle.ConstantTimeCompare([]byte(p), []byte(s.cfg.Secret)) == 1 {
		return true
	}
	// The agent token joins agents, never servers.
	return user == "node" && s.cfg.AgentSecret != "" && subtle.ConstantTimeCompare([]byte(p), []byte(s.cfg.AgentSecret)) == 1
}
