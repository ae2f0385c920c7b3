package join

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Users of the supervisor's basic auth; the password is the token's secret.
const (
	// UserNode is the user an agent authenticates as.
	UserNode = "node"
	// UserServer is the user a joining server authenticates as.
	UserServer = "server"
)

// maxAnswerBytes bounds an answer Supervisor.Get or PostJSON reads.
const maxAnswerBytes = 16 << 20

// Supervisor is a client of a server's supervisor API that trusts only the
// cluster CA and authenticates with the token's secret. Create it with
// NewSupervisor from a CA that FetchCA returned.
type Supervisor struct {
	base   string
	host   string
	user   string
	secret string
	client *http.Client
}

// NewSupervisor returns a client of the supervisor at serverURL (--server)
// that verifies the server's certificate against caPEM only, for the URL's
// host, and sends user (UserNode or UserServer) and tok.Secret as HTTP
// basic auth on every request. Since the secret travels only inside a TLS
// connection verified against caPEM, caPEM must be trusted: from FetchCA, or
// from the node's own disk. If tok is pinned, caPEM must hash to tok.CAHash.
//
// It never follows redirects. Requests end with their context; call Close
// when done.
func NewSupervisor(serverURL string, caPEM []byte, tok Token, user string) (*Supervisor, error) {
	return NewSupervisorWithCert(serverURL, caPEM, tok, user, nil)
}

// NewSupervisorWithCert is NewSupervisor that also presents cert, if not
// nil, as the TLS client certificate: a node that joined before shows its
// kubelet client certificate, which the supervisor accepts in place of the
// token (a rotated, expired or deleted token does not lock it out).
func NewSupervisorWithCert(serverURL string, caPEM []byte, tok Token, user string, cert *tls.Certificate) (*Supervisor, error) {
	base, host, err := parseServerURL(serverURL)
	if err != nil {
		return nil, err
	}
	if err := checkSecret(tok.Secret, "--token"); err != nil {
		return nil, refused(err)
	}
	if user == "" || strings.ContainsAny(user, ":\r\n") {
		return nil, refused(fmt.Errorf("join: supervisor user %q: want %q or %q", user, UserNode, UserServer))
	}
	if tok.Pinned() && CAHash(caPEM) != tok.CAHash {
		return nil, refused(fmt.Errorf("join: the CA for --server %s does not match the --token's hash (sha256 %s, token says %s)", base, CAHash(caPEM), tok.CAHash))
	}
	pool, err := parseBundle(caPEM)
	if err != nil {
		return nil, refused(fmt.Errorf("join: the CA for --server %s: %w", base, err))
	}
	cfg := verifiedTLS(pool, host)
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &Supervisor{
		base:   base,
		host:   host,
		user:   user,
		secret: tok.Secret,
		client: newHTTPClient(cfg),
	}, nil
}

// Do sends an authenticated request for path (which starts with "/") and
// returns the answer whatever its status; the caller closes its body.
func (s *Supervisor) Do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("join: supervisor path %q must start with /", path)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("join: --server %s: %w", s.base, err)
	}
	req.SetBasicAuth(s.user, s.secret)
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("join: --server %s: %w", s.base, explainTLS(err, "the cluster CA", s.host))
	}
	return resp, nil
}

// Get makes an authenticated GET of path and returns the body of a 200
// answer (at most 16 MiB). Any other status is an error naming the URL and
// quoting the server's message; 401 says that the --token's secret was
// refused (403 is a refusal of something else, e.g. the node name, which
// the message explains). A 4xx answer other than 408 and 429 is a
// RefusedError (see Permanent); a 5xx one is worth retrying.
func (s *Supervisor) Get(ctx context.Context, path string) ([]byte, error) {
	return s.call(ctx, http.MethodGet, path, nil)
}

// PostJSON makes an authenticated POST of in as JSON to path and decodes a
// 200 answer into out; other statuses are errors as with Get.
func (s *Supervisor) PostJSON(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	answer, err := s.call(ctx, http.MethodPost, path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return fmt.Errorf("join: --server %s: POST %s: %w", s.base, s.base+path, err)
	}
	return nil
}

// call sends the request and returns the body of a 200 answer.
func (s *Supervisor) call(ctx context.Context, method, path string, body io.Reader) ([]byte, error) {
	resp, err := s.Do(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	u := s.base + path
	b, err := readLimited(resp.Body, u, maxAnswerBytes)
	if err != nil {
		return nil, fmt.Errorf("join: --server %s: %w", s.base, err)
	}
	msg := ""
	if m := strings.TrimSpace(string(b)); m != "" && resp.StatusCode != http.StatusOK {
		msg = ": " + m
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return b, nil
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, refused(fmt.Errorf("join: --server %s refused the --token's secret for user %q: %s %s: %s%s", s.base, s.user, method, u, resp.Status, msg))
	case refusedStatus(resp.StatusCode):
		return nil, refused(fmt.Errorf("join: --server %s: %s %s: %s%s", s.base, method, u, resp.Status, msg))
	default:
		return nil, fmt.Errorf("join: --server %s: %s %s: %s%s", s.base, method, u, resp.Status, msg)
	}
}

// Close releases the client's idle connections.
func (s *Supervisor) Close() { s.client.CloseIdleConnections() }
