package join

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// RefusedError is a definite answer that retrying cannot change: the server
// refused the token's secret, the node's name or its settings, or it is not
// a kedge server. It keeps the error that explains it.
type RefusedError struct{ Err error }

// Error is the explanation's text.
func (e *RefusedError) Error() string { return e.Err.Error() }

// Unwrap returns the explanation.
func (e *RefusedError) Unwrap() error { return e.Err }

// refused marks err as definite.
func refused(err error) error { return &RefusedError{Err: err} }

// refusedStatus reports whether an HTTP status is a definite refusal: a
// 4xx other than 408 (timeout) and 429 (too many requests). 5xx answers
// come from a server that is starting or has lost its datastore for a
// while; they, and network errors, are worth retrying.
func refusedStatus(code int) bool {
	return code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
}

// Permanent reports whether err ends a join: a RefusedError, a CA that does
// not match the token (CAMismatchError), or a server certificate that does
// not verify. Anything else (a refused connection, a timeout, a 503 from a
// server still starting) may pass when the server is up.
func Permanent(err error) bool {
	var (
		refusal  *RefusedError
		mismatch *CAMismatchError
		hostErr  x509.HostnameError
		authErr  x509.UnknownAuthorityError
		verify   *tls.CertificateVerificationError
	)
	return errors.As(err, &refusal) || errors.As(err, &mismatch) ||
		errors.As(err, &hostErr) || errors.As(err, &authErr) || errors.As(err, &verify)
}

// RetryPolicy is how Retry waits between attempts.
type RetryPolicy struct {
	// First is the wait after the first failure; it doubles up to Max.
	First, Max time.Duration
	// LogEvery bounds how often Retry logs that it still waits.
	LogEvery time.Duration
}

// DefaultRetry waits 0.5 s after the first failure, doubling to 10 s, and
// logs what it waits for every 10 s.
var DefaultRetry = RetryPolicy{First: 500 * time.Millisecond, Max: 10 * time.Second, LogEvery: 10 * time.Second}

// Retry calls attempt until it returns nil, a Permanent error, or ctx ends.
// Between attempts it waits as p says (with 10% jitter), and it logs, at
// most once per p.LogEvery, that it waits for what (e.g. "the server at
// https://10.0.0.1:6443 to accept the join") with the last error. It
// returns the permanent error as is, or ctx's cause wrapped with the last
// error.
func Retry(ctx context.Context, p RetryPolicy, log *slog.Logger, what string, attempt func(context.Context) error) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	backoff := wait.Backoff{Duration: p.First, Factor: 2, Jitter: 0.1, Steps: int(^uint(0) >> 1), Cap: p.Max}
	start := time.Now()
	var lastLog time.Time
	for tries := 1; ; tries++ {
		err := attempt(ctx)
		if err == nil {
			if tries > 1 {
				log.Info("done waiting for "+what, "attempts", tries, "waited", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if Permanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stopped waiting for %s (%w): %w", what, context.Cause(ctx), err)
		}
		if lastLog.IsZero() || time.Since(lastLog) >= p.LogEvery {
			log.Info("waiting for "+what, "attempts", tries, "waited", time.Since(start).Round(time.Second), "last_error", err.Error())
			lastLog = time.Now()
		}
		t := time.NewTimer(backoff.Step())
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("stopped waiting for %s (%w): %w", what, context.Cause(ctx), err)
		case <-t.C:
		}
	}
}

// Post is one join attempt: it fetches and pins the cluster CA of
// serverURL (FetchCA), then POSTs in as JSON to path as user, with tok's
// secret, and decodes the answer into out. Run it under Retry.
func Post(ctx context.Context, serverURL string, tok Token, user, path string, in, out any, log *slog.Logger) error {
	return PostWithCert(ctx, serverURL, tok, user, nil, path, in, out, log)
}

// PostWithCert is Post that presents cert (if not nil) as the TLS client
// certificate (see NewSupervisorWithCert).
func PostWithCert(ctx context.Context, serverURL string, tok Token, user string, cert *tls.Certificate, path string, in, out any, log *slog.Logger) error {
	return PostTrusted(ctx, serverURL, tok, nil, user, cert, path, in, out, log)
}

// PostTrusted is PostWithCert for a node that joined before and holds
// trustedCA, the cluster's CA bundle from then (nil: none). When the CA the
// server serves does not match the token's hash because the cluster's CA
// was replaced since (`kedge certificate rotate-ca`), the node fetches it
// again over TLS verified against trustedCA (the server's certificate chains
// to the old CA through the cross-signed new one) and goes on with it,
// warning that the token is outdated.
func PostTrusted(ctx context.Context, serverURL string, tok Token, trustedCA []byte, user string, cert *tls.Certificate, path string, in, out any, log *slog.Logger) error {
	ca, err := FetchCA(ctx, serverURL, tok, log)
	var mismatch *CAMismatchError
	if errors.As(err, &mismatch) && len(trustedCA) > 0 {
		if ca, err = fetchCAVerified(ctx, serverURL, trustedCA); err == nil {
			if log != nil {
				log.Warn("the --token pins a CA the cluster replaced (kedge certificate rotate-ca); the server proved itself with the CA this node holds: put the cluster's new token in this node's config",
					"server", serverURL, "ca_sha256", CAHash(ca), "token_ca_sha256", tok.CAHash)
			}
			tok.CAHash = CAHash(ca)
		}
	}
	if err != nil {
		return err
	}
	sup, err := NewSupervisorWithCert(serverURL, ca, tok, user, cert)
	if err != nil {
		return err
	}
	defer sup.Close()
	return sup.PostJSON(ctx, path, in, out)
}

// fetchCAVerified fetches the CA at <serverURL>/cacerts over TLS verified
// against trustedCA for the URL's host.
func fetchCAVerified(ctx context.Context, serverURL string, trustedCA []byte) ([]byte, error) {
	base, host, err := parseServerURL(serverURL)
	if err != nil {
		return nil, err
	}
	pool, err := parseBundle(trustedCA)
	if err != nil {
		return nil, refused(fmt.Errorf("join: the CA this node holds: %w", err))
	}
	c := newHTTPClient(verifiedTLS(pool, host))
	c.Timeout = fetchTimeout
	defer c.CloseIdleConnections()
	caPEM, err := get(ctx, c, base+CACertsPath, maxCABytes)
	if err != nil {
		return nil, fmt.Errorf("join: --server %s: %w", base, explainTLS(err, "the CA this node holds", host))
	}
	if _, err := parseBundle(caPEM); err != nil {
		return nil, refused(fmt.Errorf("join: --server %s: %s did not answer a CA bundle: %w", base, base+CACertsPath, err))
	}
	return caPEM, nil
}
