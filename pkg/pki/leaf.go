package pki

import (
	"cmp"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"
)

// leafSpec describes one leaf certificate and where it lives.
type leafSpec struct {
	certPath, keyPath string
	ca                *authority
	cn                string
	orgs              []string
	usages            []x509.ExtKeyUsage
	sans              sanSet
}

// ensureLeaf keeps the leaf at s.certPath if it is still good, and issues a
// new key and certificate otherwise.
func ensureLeaf(s leafSpec, now time.Time) error {
	keep, err := leafCurrent(s, now)
	if err != nil || keep {
		return err
	}
	return issueLeaf(s, now)
}

// leafCurrent reports whether the existing leaf can be kept: both files
// parse, the key matches, the subject and usages are the requested ones, the
// certificate chains to the current CA, expires more than renewBefore from
// now and carries every requested SAN. Missing or unparsable files mean
// "issue again"; only other read errors are returned.
func leafCurrent(s leafSpec, now time.Time) (bool, error) {
	certPEM, err := readOptional(s.certPath)
	if err != nil || certPEM == nil {
		return false, err
	}
	keyPEM, err := readOptional(s.keyPath)
	if err != nil || keyPEM == nil {
		return false, err
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return false, nil
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil || !publicKeyMatches(cert, key) {
		return false, nil
	}
	if cert.Subject.CommonName != s.cn || !slices.Equal(cert.Subject.Organization, s.orgs) {
		return false, nil
	}
	if !slices.Equal(sortedUsages(cert.ExtKeyUsage), sortedUsages(s.usages)) {
		return false, nil
	}
	if cert.NotAfter.Sub(now) <= renewBefore {
		return false, nil
	}
	roots := x509.NewCertPool()
	roots.AddCert(s.ca.cert)
	opts := x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: s.usages}
	if _, err := cert.Verify(opts); err != nil {
		return false, nil
	}
	return s.sans.coveredBy(cert.DNSNames, cert.IPAddresses), nil
}

// issueLeaf generates a new key and a certificate signed by s.ca, valid for
// leafValidity (never beyond the CA), and writes both.
func issueLeaf(s leafSpec, now time.Time) error {
	key, err := newECKey()
	if err != nil {
		return fmt.Errorf("pki: generate key for %s: %w", s.keyPath, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return fmt.Errorf("pki: serial for %s: %w", s.certPath, err)
	}
	skid, err := keyID(key.Public())
	if err != nil {
		return fmt.Errorf("pki: key id for %s: %w", s.certPath, err)
	}
	akid := s.ca.cert.SubjectKeyId
	if len(akid) == 0 {
		if akid, err = keyID(s.ca.cert.PublicKey); err != nil {
			return fmt.Errorf("pki: key id of %s: %w", s.ca.certPath, err)
		}
	}
	notAfter := now.Add(leafValidity)
	if notAfter.After(s.ca.cert.NotAfter) {
		notAfter = s.ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: s.cn, Organization: s.orgs},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           s.usages,
		BasicConstraintsValid: true,
		SubjectKeyId:          skid,
		AuthorityKeyId:        akid,
		DNSNames:              s.sans.dns,
		IPAddresses:           s.sans.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca.cert, key.Public(), s.ca.key)
	if err != nil {
		return fmt.Errorf("pki: sign %s with %s: %w", s.certPath, s.ca.certPath, err)
	}
	// Key first: a crash before the certificate is written leaves a pair
	// that does not match, which the next run issues again.
	if err := writeKey(s.keyPath, key); err != nil {
		return err
	}
	return writeCert(s.certPath, der)
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
