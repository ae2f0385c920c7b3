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
	ca, err := FetchCA(ctx, serverURL, tok, log)
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
