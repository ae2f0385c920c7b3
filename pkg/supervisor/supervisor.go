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
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/token"
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
	// ServerSecret, if set, returns the server token's secret the cluster
	// accepts now (a rotated one, see package token) instead of Secret; an
	// error answers 503 (try again).
	ServerSecret func() (string, error)
	// EncryptionConfigFile is the apiserver's encryption config
	// (<data-dir>/server/cred/encryption-config.json), sent to joining
	// servers and replaced by `kedge secrets-encrypt`; "" if Secrets are
	// not encrypted.
	EncryptionConfigFile string
	// Encryption, if set, serves EncryptionPath (see package secretsencrypt).
	Encryption http.Handler
	// CertValidity is how long node certificates are valid; 0: one year.
	CertValidity time.Duration
	// Versions, if set, returns the servers' Kubernetes versions (node
	// name → version) and the datastore's (see package skew), against which
	// joining nodes that send theirs are checked.
	Versions func(ctx context.Context) (servers map[string]string, datastore string, err error)
	// Log receives the skew policy's warnings (nil: none).
	Log *slog.Logger
}

// EncryptionPath is where Config.Encryption is served.
const EncryptionPath = "/v1-kedge/secrets-encryption"

// Supervisor is the join API's HTTP front.
type Supervisor struct {
	cfg Config

	mu   sync.Mutex
	kube kubernetes.Interface
}

// New checks that the CA bundle can be read; it is read again for every
// request of /cacerts (`kedge certificate rotate-ca` replaces it).
func New(cfg Config) (*Supervisor, error) {
	if _, err := os.ReadFile(cfg.CACertFile); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	return &Supervisor{cfg: cfg}, nil
}

// Wrap returns a handler that serves the supervisor's paths and hands every
// other request to next (the apiserver, with its own authentication).
func (s *Supervisor) Wrap(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+CACertsPath, func(w http.ResponseWriter, _ *http.Request) {
		// The CA a token pins: during a CA rotation the new CA alone.
		ca, err := os.ReadFile(s.cfg.CACertFile)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if pinned, err := pki.PinnedCAOf(ca); err == nil {
			ca = pinned
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(ca)
	})
	mux.HandleFunc("GET "+CABundlesPath, s.caBundlesHandler)
	mux.HandleFunc("GET "+PingPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("pong"))
	})
	mux.HandleFunc("POST "+NodePath, s.nodeHandler)
	mux.HandleFunc("POST "+ServerPath, s.serverHandler)
	mux.HandleFunc("POST "+NodeConfigPath, s.nodeConfigHandler)
	if s.cfg.Encryption != nil {
		mux.Handle(EncryptionPath, s.cfg.Encryption)
	}
	mux.Handle("/", next)
	return mux
}

// authError is a refused or failed authorization: its HTTP status and the
// message the joining node shows.
type authError struct {
	status int
	msg    string
}

func (e *authError) Error() string { return e.msg }

// authorize checks that r carries the basic auth user and a secret that
// joins it: the server token (user "server" and "node"), the agent token
// (user "node"), or a bootstrap token of kube-system whose usages allow it
// and that has not expired (see package token). A supervisor without a
// secret authorizes nobody: an empty password must not open the join API.
// wrong is the message for a secret that matches nothing.
func (s *Supervisor) authorize(r *http.Request, user, wrong string) *authError {
	u, p, ok := r.BasicAuth()
	if !ok || u != user || p == "" {
		return &authError{http.StatusUnauthorized, wrong}
	}
	// The agent token joins agents, never servers.
	if user == "node" && s.cfg.AgentSecret != "" && subtle.ConstantTimeCompare([]byte(p), []byte(s.cfg.AgentSecret)) == 1 {
		return nil
	}
	secret, secretErr := s.cfg.Secret, error(nil)
	if s.cfg.ServerSecret != nil {
		secret, secretErr = s.cfg.ServerSecret()
	}
	if secretErr == nil && secret != "" && subtle.ConstantTimeCompare([]byte(p), []byte(secret)) == 1 {
		return nil
	}
	if token.IsBootstrapToken(p) {
		client, err := s.client()
		if err != nil {
			return &authError{http.StatusServiceUnavailable, err.Error()}
		}
		usage := token.UsageAgent
		if user == "server" {
			usage = token.UsageServer
		}
		switch err := token.Check(r.Context(), client, p, usage, time.Now()); {
		case err == nil:
			return nil
		case errors.Is(err, token.ErrWrongSecret), errors.As(err, new(*token.NotFoundError)) && secretErr != nil:
			// Maybe the rotated server token, not known yet.
		case token.Refused(err):
			return &authError{http.StatusUnauthorized, err.Error()}
		default:
			return &authError{http.StatusServiceUnavailable, err.Error()}
		}
	}
	if secretErr != nil {
		return &authError{http.StatusServiceUnavailable, secretErr.Error()}
	}
	return &authError{http.StatusUnauthorized, wrong}
}

// writeAuthError answers a refused authorization.
func writeAuthError(w http.ResponseWriter, e *authError) {
	if e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "2")
	}
	http.Error(w, e.msg, e.status)
}
