package pki

import (
	"cmp"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// leafSpec describes one leaf certificate and where it lives.
type leafSpec struct {
	service           string // the Service name `kedge certificate rotate --service` uses
	certPath, keyPath string
	ca                *authority
	cn                string
	orgs              []string
	usages            []x509.ExtKeyUsage
	sans              sanSet
}

// issuing says how leaves are issued and renewed in one Generate or
// IssueNode call.
type issuing struct {
	now      time.Time
	validity time.Duration   // of a new leaf
	rotate   map[string]bool // services whose leaves are issued again regardless
	onIssue  func(path, reason string)
	// publicKeys, by certificate file name, are keys to sign for instead of
	// key files: their private halves stay with their owner (an agent).
	publicKeys map[string]crypto.PublicKey
}

// ensureLeaf keeps the leaf at s.certPath if it is still good, and issues a
// new key and certificate otherwise.
func ensureLeaf(s leafSpec, is issuing) error {
	reason, err := leafReason(s, is.now)
	if err != nil {
		return err
	}
	if reason == "" && is.rotate[s.service] {
		reason = "rotation requested"
	}
	if reason == "" {
		return nil
	}
	if pub, ok := is.publicKeys[filepath.Base(s.certPath)]; ok {
		// The key stays with its owner (an agent): only the certificate.
		der, err := signLeaf(s, is.now, is.validity, pub)
		if err != nil {
			return err
		}
		if err := writeLeafCert(s.certPath, der, s.ca.chain); err != nil {
			return err
		}
		if is.onIssue != nil {
			is.onIssue(s.certPath, reason)
		}
		return nil
	}
	// A leaf renewed for its age, SANs or CA keeps its key: the key file
	// does not change, so a reader never sees a certificate and key that
	// do not match. A missing or bad key, or a requested rotation, gets a
	// new one.
	key := keepKey(s, reason)
	if err := issueLeaf(s, is.now, is.validity, key); err != nil {
		return err
	}
	if is.onIssue != nil {
		is.onIssue(s.certPath, reason)
	}
	return nil
}

// leafReason says why the existing leaf cannot be kept, or "" if it can:
// both files parse, the key matches, the subject and usages are the
// requested ones, the certificate chains to the current CA, is not yet in
// its renewal window (RenewWindow) and carries every requested SAN. Only
// read errors other than a missing file are returned as errors.
func leafReason(s leafSpec, now time.Time) (string, error) {
	certPEM, err := readOptional(s.certPath)
	if err != nil {
		return "", err
	}
	keyPEM, err := readOptional(s.keyPath)
	if err != nil {
		return "", err
	}
	if certPEM == nil || keyPEM == nil {
		return "missing", nil
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return "unreadable certificate", nil
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil || !publicKeyMatches(cert, key) {
		return "key missing or not the certificate's", nil
	}
	return certReason(cert, s, now), nil
}

// certReason is leafReason for a parsed certificate whose key matched.
func certReason(cert *x509.Certificate, s leafSpec, now time.Time) string {
	if cert.Subject.CommonName != s.cn || !slices.Equal(cert.Subject.Organization, s.orgs) {
		return "subject changed"
	}
	if !slices.Equal(sortedUsages(cert.ExtKeyUsage), sortedUsages(s.usages)) {
		return "key usages changed"
	}
	if NeedsRenewal(cert, now) {
		return "expires " + cert.NotAfter.UTC().Format(time.RFC3339)
	}
	roots := x509.NewCertPool()
	roots.AddCert(s.ca.cert)
	opts := x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: s.usages}
	if _, err := cert.Verify(opts); err != nil {
		return "not signed by the current CA"
	}
	if !s.sans.coveredBy(cert.DNSNames, cert.IPAddresses) {
		return "SANs changed"
	}
	return ""
}

// keepKey returns the leaf's existing key when a renewal for reason may
// keep it, or nil.
func keepKey(s leafSpec, reason string) crypto.Signer {
	if NewKeyNeeded(reason) {
		return nil
	}
	key, err := readKey(s.keyPath)
	if err != nil {
		return nil
	}
	return key
}

// issueLeaf signs a certificate with s.ca, valid for validity (never
// beyond the CA), for key, or for a new key if key is nil, and writes the
// key (if new) and the certificate.
func issueLeaf(s leafSpec, now time.Time, validity time.Duration, key crypto.Signer) error {
	newKey := key == nil
	if newKey {
		var err error
		if key, err = newECKey(); err != nil {
			return fmt.Errorf("pki: generate key for %s: %w", s.keyPath, err)
		}
	}
	der, err := signLeaf(s, now, validity, key.Public())
	if err != nil {
		return err
	}
	// Key first: a crash before the certificate is written leaves a pair
	// that does not match, which the next run issues again.
	if newKey {
		if err := writeKey(s.keyPath, key); err != nil {
			return err
		}
	}
	return writeLeafCert(s.certPath, der, s.ca.chain)
}

// signLeaf returns the DER certificate of s for pub, signed by s.ca.
func signLeaf(s leafSpec, now time.Time, validity time.Duration, pub crypto.PublicKey) ([]byte, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("pki: serial for %s: %w", s.certPath, err)
	}
	skid, err := keyID(pub)
	if err != nil {
		return nil, fmt.Errorf("pki: key id for %s: %w", s.certPath, err)
	}
	akid := s.ca.cert.SubjectKeyId
	if len(akid) == 0 {
		if akid, err = keyID(s.ca.cert.PublicKey); err != nil {
			return nil, fmt.Errorf("pki: key id of %s: %w", s.ca.certPath, err)
		}
	}
	notAfter := now.Add(validity)
	if notAfter.After(s.ca.cert.NotAfter) {
		notAfter = s.ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: s.cn, Organization: s.orgs},
		NotBefore:             now.Add(-skewFor(validity)),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           s.usages,
		BasicConstraintsValid: true,
		SubjectKeyId:          skid,
		AuthorityKeyId:        akid,
		DNSNames:              s.sans.dns,
		IPAddresses:           s.sans.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca.cert, pub, s.ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign %s with %s: %w", s.certPath, s.ca.certPath, err)
	}
	return der, nil
}

// readOptional reads path; a missing file yields nil data and no error.
func readOptional(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pki: read %s: %w", path, err)
	}
	return data, nil
}

// sortedUsages returns a sorted copy of usages.
func sortedUsages(usages []x509.ExtKeyUsage) []x509.ExtKeyUsage {
	return slices.SortedFunc(slices.Values(usages), cmp.Compare[x509.ExtKeyUsage])
}
