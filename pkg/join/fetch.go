package join

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Paths of the supervisor's unauthenticated endpoints.
const (
	// CACertsPath serves the PEM bundle of the cluster's server CA.
	CACertsPath = "/cacerts"
	// PingPath answers "pong".
	PingPath = "/ping"
)

// Limits of the requests FetchCA makes.
const (
	maxCABytes   = 1 << 20
	maxPingBytes = 64
	fetchTimeout = 30 * time.Second
)

// CAMismatchError is FetchCA's error when the CA bundle a server serves does
// not hash to the token's CA hash: the node reached the wrong server, or a
// man in the middle. Callers that retry on network errors should give up on
// this one.
type CAMismatchError struct {
	// URL is the /cacerts address the bundle came from.
	URL string
	// Got is the SHA-256 of the bundle served, Want the token's CA hash.
	Got, Want string
}

// Error says which server and both hashes.
func (e *CAMismatchError) Error() string {
	return fmt.Sprintf("join: the CA at %s does not match the --token's hash (sha256 %s, token says %s): wrong server or a man in the middle",
		e.URL, e.Got, e.Want)
}

// FetchCA fetches the cluster CA bundle from the server at serverURL (the
// --server flag, "https://host:6443") and returns it once it is trusted.
//
//  1. GET <serverURL>/cacerts over TLS without verifying the server: the
//     node has no trust yet. Nothing secret is sent.
//  2. If tok is pinned, the SHA-256 of the body must equal tok.CAHash;
//     otherwise FetchCA returns a *CAMismatchError and makes no other
//     request. If tok is not pinned, it logs one warning that the CA is not
//     pinned and goes on trusting the first answer.
//  3. The body must be one or more PEM certificates.
//  4. GET <serverURL>/ping with the fetched bundle as the only roots and the
//     URL's host as server name: the server must prove it holds a
//     certificate of that CA, valid for that host.
//
// Each request times out after 30 seconds unless ctx ends first. log may be
// nil. Errors that retrying cannot change are Permanent; the others (no
// answer, a 5xx from a server still starting) are worth retrying with Retry.
func FetchCA(ctx context.Context, serverURL string, tok Token, log *slog.Logger) ([]byte, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base, host, err := parseServerURL(serverURL)
	if err != nil {
		return nil, err
	}

	caURL := base + CACertsPath
	untrusted := newHTTPClient(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // nothing is trusted or sent yet; the body is checked against the token's hash.
	untrusted.Timeout = fetchTimeout
	defer untrusted.CloseIdleConnections()
	caPEM, err := get(ctx, untrusted, caURL, maxCABytes)
	if err != nil {
		return nil, fmt.Errorf("join: fetch the cluster CA from --server %s: %w", base, err)
	}

	got := CAHash(caPEM)
	if tok.Pinned() {
		if got != tok.CAHash {
			return nil, &CAMismatchError{URL: caURL, Got: got, Want: tok.CAHash}
		}
	} else {
		log.Warn("the --token has no CA hash, so the cluster CA is not pinned and a man in the middle could pose as the server; use the full token from <data-dir>/server/token",
			"server", base, "ca_sha256", got)
	}

	pool, err := parseBundle(caPEM)
	if err != nil {
		return nil, refused(fmt.Errorf("join: --server %s: %s did not answer a CA bundle: %w", base, caURL, err))
	}

	verified := newHTTPClient(verifiedTLS(pool, host))
	verified.Timeout = fetchTimeout
	defer verified.CloseIdleConnections()
	pingURL := base + PingPath
	pong, err := get(ctx, verified, pingURL, maxPingBytes)
	if err != nil {
		return nil, fmt.Errorf("join: --server %s: %w", base, explainTLS(err, "the CA it serves at "+caURL, host))
	}
	if strings.TrimSpace(string(pong)) != "pong" {
		return nil, refused(fmt.Errorf("join: --server %s: %s answered %.20q, want \"pong\": is this a kedge server?", base, pingURL, pong))
	}
	return caPEM, nil
}

// explainTLS turns a failed verified request into a sentence that says
// what the certificate lacks, keeping err. ca names the trusted CA.
func explainTLS(err error, ca, host string) error {
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	switch {
	case errors.As(err, &hostErr):
		return fmt.Errorf("the server's certificate is not valid for %q (add it to the server's SANs, or use a name the certificate has): %w", host, err)
	case errors.As(err, &authErr):
		return fmt.Errorf("the server's certificate is not signed by %s: %w", ca, err)
	default:
		var verr *tls.CertificateVerificationError
		if errors.As(err, &verr) {
			return fmt.Errorf("the server's certificate does not verify against %s: %w", ca, err)
		}
		return err
	}
}

// parseServerURL checks a --server value and returns it without a trailing
// slash, and its host name (no port) for TLS verification. It refuses user
// information in the URL, which Go's HTTP client would send as basic auth
// before any check.
func parseServerURL(s string) (base, host string, err error) {
	const want = "want https://<host>:<port>, like https://10.0.0.1:6443"
	defer func() {
		if err != nil {
			err = refused(err)
		}
	}()
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", "", fmt.Errorf("join: --server %q is not a URL (%w): %s", s, err, want)
	case u.Scheme != "https":
		return "", "", fmt.Errorf("join: --server %q: the scheme must be https: %s", s, want)
	case u.Hostname() == "":
		return "", "", fmt.Errorf("join: --server %q has no host: %s", s, want)
	case u.User != nil:
		return "", "", fmt.Errorf("join: --server must not hold a user or password; the secret goes in --token: %s", want)
	case u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return "", "", fmt.Errorf("join: --server %q must not have a query or fragment: %s", s, want)
	}
	return strings.TrimRight(u.String(), "/"), u.Hostname(), nil
}

// parseBundle parses a PEM bundle of certificates into a pool. Anything but
// CERTIFICATE blocks and whitespace is an error.
func parseBundle(b []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is a %q, want CERTIFICATE", n+1, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	switch {
	case n == 0:
		return nil, errors.New("no PEM certificate found")
	case len(bytes.TrimSpace(rest)) > 0:
		return nil, fmt.Errorf("%d bytes that are not PEM follow certificate %d", len(bytes.TrimSpace(rest)), n)
	}
	return pool, nil
}

// verifiedTLS is the client TLS configuration that trusts only pool and
// checks the server's certificate against host.
func verifiedTLS(pool *x509.CertPool, host string) *tls.Config {
	return &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
}

// newHTTPClient returns a client with its own transport using cfg. It never
// follows redirects: a redirect could carry the secret to another address.
func newHTTPClient(cfg *tls.Config) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       cfg,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			ForceAttemptHTTP2:     true,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// get makes an unauthenticated GET of rawURL and returns the body of a 200
// answer, at most limit bytes.
func get(ctx context.Context, c *http.Client, rawURL string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("GET %s: %s (is this a kedge server?)", rawURL, resp.Status)
		if refusedStatus(resp.StatusCode) {
			return nil, refused(err)
		}
		return nil, err
	}
	return readLimited(resp.Body, rawURL, limit)
}

// readLimited reads all of r, refusing more than limit bytes.
func readLimited(r io.Reader, rawURL string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: read the answer: %w", rawURL, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("GET %s: the answer is larger than %d bytes", rawURL, limit)
	}
	return b, nil
}
