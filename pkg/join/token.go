package join

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
)

// Prefix opens the full form of a version-1 kedge token:
//
//	KEDGE1<64 lowercase hex: SHA-256 of the CA bundle served at /cacerts>::<secret>
//
// The digit is the token format's version (one digit). A later format
// (another hash, another separator) gets a new digit, and Parse names the
// version it does not understand instead of misreading the rest. The prefix
// is unlike k3s's "K10", so a k3s token pasted by mistake is recognised as
// such.
const Prefix = "KEDGE1"

// separator splits the CA hash from the secret in the full form. The secret
// alphabet has no ':', so the first "::" is the only one.
const separator = "::"

// maxSecretLen bounds a secret so it always fits an HTTP header.
const maxSecretLen = 256

// secretRandomBytes is how much randomness GenerateSecret draws: 160 bits.
const secretRandomBytes = 20

// secretAlphabet lists the characters a secret may hold besides ASCII
// letters and digits. It covers hex, base64, base64url and kubeadm-style
// "abcdef.0123456789abcdef" secrets, and leaves out ':' (the separator of
// the token and of HTTP basic auth), whitespace, control characters,
// quotes, '~', '@', '%', non-ASCII and every shell metacharacter, so a token
// survives copy and paste, an unquoted command line and a basic-auth
// header.
const secretAlphabet = "-._+/="

// Token is what a node needs to join a cluster: the SHA-256 of the cluster
// CA bundle, to pin the CA before any secret is sent, and the secret itself.
//
// String returns the secret in clear text; a Token logged through slog is
// redacted (see LogValue).
type Token struct {
	// CAHash is the lowercase hex SHA-256 of the CA bundle the server serves
	// at /cacerts (see CAHash), or "" for a bare secret that pins nothing.
	CAHash string
	// Secret is the cluster's shared secret, sent as the HTTP basic-auth
	// password once the server has proven it holds a certificate of the CA.
	Secret string
}

// New returns the full token for a cluster whose /cacerts serves caPEM and
// whose secret is secret. The secret is not checked; use one from
// GenerateSecret or Parse.
func New(caPEM []byte, secret string) Token {
	return Token{CAHash: CAHash(caPEM), Secret: secret}
}

// Pinned reports whether the token carries a CA hash, so that a joining
// node can tell the real cluster from an impostor before it sends the
// secret.
func (t Token) Pinned() bool { return t.CAHash != "" }

// String returns the token as a user types it: Prefix, the CA hash, "::" and
// the secret, or the bare secret when the token is not pinned. Parse reads
// it back. The result contains the secret.
func (t Token) String() string {
	if !t.Pinned() {
		return t.Secret
	}
	return Prefix + t.CAHash + separator + t.Secret
}

// LogValue implements slog.LogValuer: a Token in a log record shows its CA
// hash and never its secret.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("ca_sha256", t.CAHash),
		slog.String("secret", "<redacted>"),
	)
}

// CAHash returns the lowercase hex SHA-256 of pem, which must be the exact
// bytes the server serves at /cacerts: every byte counts, including PEM
// headers, order of certificates and the trailing newline.
//
// This is k3s's choice. kubeadm instead hashes the DER SubjectPublicKeyInfo
// of the CA certificate ("sha256:<hex>" in --discovery-token-ca-cert-hash).
// An SPKI pin survives re-issuing the CA certificate with the same key and
// reformatting the bundle, but it pins one key while the node goes on to
// trust every certificate in the bundle. Hashing the served bytes pins
// exactly what the node will trust and needs no parsing before the check;
// the price is that any change to the bundle (a rotation adding a second CA)
// changes the hash and invalidates tokens already handed out.
func CAHash(pem []byte) string {
	sum := sha256.Sum256(pem)
	return hex.EncodeToString(sum[:])
}

// GenerateSecret returns a new random secret: 160 bits from crypto/rand as
// 40 lowercase hex characters, which are safe in URLs, shells and basic
// auth.
func GenerateSecret() (string, error) {
	b := make([]byte, secretRandomBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("join: generate a token secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Parse reads a --token value. It accepts the full form
// "KEDGE1<sha256 hex>::<secret>" (see Prefix) and a bare secret, which joins
// without pinning the CA. A hash in upper case is accepted and returned in
// lower case.
//
// A secret is 1 to 256 characters long and holds only ASCII letters, digits
// and "-._+/="; a bare secret may not start like a full token ("KEDGE" and
// a digit), which is a token cut short. A ':' is refused because it separates the hash from the
// secret; whitespace, quotes and shell metacharacters are refused because
// they do not survive copy and paste.
func Parse(s string) (Token, error) {
	return parse(s, "--token")
}

// parse is Parse with the source of s (a flag or a file name) for errors.
func parse(s, source string) (Token, error) {
	if s == "" {
		return Token{}, fmt.Errorf("join: %s is empty", source)
	}
	head, secret, full := strings.Cut(s, separator)
	if !full {
		if v := version(s); v != "" {
			// A full token cut short (the "::<secret>" lost in a copy), not
			// a bare secret: taken as one it would join unpinned with a
			// wrong secret, or become a first server's secret.
			return Token{}, fmt.Errorf("join: %s starts like a KEDGE%s token but has no %q and secret after the CA hash: was it cut short? want %s<sha256 hex>::<secret> or a bare secret", source, v, separator, Prefix)
		}
		if err := checkSecret(s, source); err != nil {
			return Token{}, err
		}
		return Token{Secret: s}, nil
	}
	hash, err := parseHead(head, source)
	if err != nil {
		return Token{}, err
	}
	if err := checkSecret(secret, source); err != nil {
		return Token{}, err
	}
	return Token{CAHash: hash, Secret: secret}, nil
}

// parseHead checks the part of a full token before "::" and returns its
// CA hash in lower case.
func parseHead(head, source string) (string, error) {
	const want = "want " + Prefix + "<sha256 hex>::<secret> or a bare secret"
	switch {
	case strings.HasPrefix(head, Prefix):
	case strings.HasPrefix(head, "K10"):
		return "", fmt.Errorf("join: %s looks like a k3s token (K10…); kedge tokens start with %s: %s", source, Prefix, want)
	case version(head) != "":
		return "", fmt.Errorf("join: %s is a KEDGE%s token (from another kedge version?); this kedge reads only %s tokens", source, version(head), Prefix)
	default:
		return "", fmt.Errorf("join: %s does not start with %s: %s", source, Prefix, want)
	}
	hash := strings.ToLower(head[len(Prefix):])
	if len(hash) != sha256.Size*2 {
		return "", fmt.Errorf("join: %s: the CA hash after %s must be 64 hex characters (a SHA-256), got %d characters", source, Prefix, len(hash))
	}
	if _, err := hex.DecodeString(hash); err != nil {
		return "", fmt.Errorf("join: %s: the CA hash after %s must be 64 hex characters (a SHA-256), got a non-hex character", source, Prefix)
	}
	return hash, nil
}

// version returns the version digit of a head that starts with "KEDGE"
// and a digit, or "". Versions are one digit: the hash that follows may
// start with digits too.
func version(head string) string {
	rest, ok := strings.CutPrefix(head, "KEDGE")
	if !ok || rest == "" || rest[0] < '0' || rest[0] > '9' {
		return ""
	}
	return rest[:1]
}

// checkSecret reports whether secret is a valid token secret, naming source
// and what is wrong. The error never repeats the secret.
func checkSecret(secret, source string) error {
	switch {
	case secret == "":
		return fmt.Errorf("join: %s has an empty secret after %q", source, separator)
	case len(secret) > maxSecretLen:
		return fmt.Errorf("join: %s: the secret is %d characters long, at most %d are allowed", source, len(secret), maxSecretLen)
	}
	for _, r := range secret {
		if !secretRune(r) {
			return fmt.Errorf("join: %s: the secret contains %q, which is not allowed: use ASCII letters, digits and %q", source, r, secretAlphabet)
		}
	}
	return nil
}

// secretRune reports whether r may appear in a secret.
func secretRune(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
		strings.ContainsRune(secretAlphabet, r)
}
