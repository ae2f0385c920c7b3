package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

// caFile names one CA of a Bundle: its certificate (bundle) file, its key
// and the name its subject starts with.
type caFile struct{ cert, key, name string }

// cas lists the five CAs of b, in the order Generate loads them. The
// service-account key is not a CA and is not rotated with them.
func (b Bundle) cas() []caFile {
	return []caFile{
		{b.ServerCA, b.ServerCAKey, "kedge-server-ca"},
		{b.ClientCA, b.ClientCAKey, "kedge-client-ca"},
		{b.RequestHeaderCA, b.RequestHeaderCAKey, "kedge-request-header-ca"},
		{b.EtcdServerCA, b.EtcdServerCAKey, "etcd-server-ca"},
		{b.EtcdPeerCA, b.EtcdPeerCAKey, "etcd-peer-ca"},
	}
}

// CrossPath is where the cross-signed copy of the CA at caPath is kept:
// server-ca.crt → server-ca.cross.crt.
func CrossPath(caPath string) string { return strings.TrimSuffix(caPath, ".crt") + ".cross.crt" }

// nextKeyPath is where StartCARotation keeps a new CA key until the CA file
// holds its certificate: server-ca.key → server-ca.next.key.
func nextKeyPath(keyPath string) string { return strings.TrimSuffix(keyPath, ".key") + ".next.key" }

// crossChain returns the cross-signed copy of cert kept beside certPath
// (CrossPath), if there is one for cert's key that is still valid at now.
func crossChain(certPath string, cert *x509.Certificate, now time.Time) ([][]byte, error) {
	data, err := readOptional(CrossPath(certPath))
	if err != nil || data == nil {
		return nil, err
	}
	cross, err := parseCert(data)
	if err != nil {
		return nil, fmt.Errorf("pki: parse %s: %w", CrossPath(certPath), err)
	}
	if !publicKeysEqual(cross.PublicKey, cert.PublicKey) || !now.Before(cross.NotAfter) {
		return nil, nil // of an older CA, or expired: chains nothing
	}
	return [][]byte{cross.Raw}, nil
}

// CARotationInProgress reports whether a CA of b is a bundle of more than
// one certificate (StartCARotation ran, FinishCARotation not yet), or a
// new CA key is waiting (StartCARotation stopped half-way).
func CARotationInProgress(b Bundle) (bool, error) {
	for _, c := range b.cas() {
		data, err := os.ReadFile(c.cert)
		if err != nil {
			return false, fmt.Errorf("pki: read %s: %w", c.cert, err)
		}
		all, err := parseCerts(data)
		if err != nil {
			return false, fmt.Errorf("pki: parse %s: %w", c.cert, err)
		}
		if len(all) > 1 {
			return true, nil
		}
		if _, err := os.Stat(nextKeyPath(c.key)); err == nil {
			return true, nil
		}
	}
	return false, nil
}

// StartCARotation replaces the five CAs of b (server, client, request
// header, etcd server, etcd peer) by new ones, the first phase of a CA
// rotation without downtime. For each CA it
//
//  1. creates a new key and a new self-signed CA certificate ("<name>@<now>"),
//  2. signs a cross certificate of the new CA with the old one (same
//     subject and key as the new CA, issued by the old, valid as long as the
//     old): CrossPath,
//  3. writes the CA file as the bundle new + old (new first: the trust
//     stores that reload it accept leaves of both CAs),
//  4. makes the new key the CA's key, so that every leaf is due ("not
//     signed by the current CA") and is issued again by the new CA, with the
//     cross certificate appended: a verifier that still trusts only the old
//     CA (etcd's pools, built once at its start) verifies the chain
//     leaf → cross → old CA, one that trusts the new CA stops at it.
//
// Every state in between is consistent (the CA file always holds the
// certificate of the key file), and a call after a crash resumes with the
// key it left. It returns an error, and changes nothing, when a rotation
// is in progress (FinishCARotation first). The service-account key is
// left alone.
func StartCARotation(b Bundle, now time.Time) error {
	for _, c := range b.cas() {
		data, err := os.ReadFile(c.cert)
		if err != nil {
			return fmt.Errorf("pki: read %s: %w", c.cert, err)
		}
		all, err := parseCerts(data)
		if err != nil {
			return fmt.Errorf("pki: parse %s: %w", c.cert, err)
		}
		_, nextErr := os.Stat(nextKeyPath(c.key))
		if len(all) > 1 && nextErr != nil {
			return fmt.Errorf("a CA rotation is in progress (%s holds %d CAs): finish it first with `kedge certificate rotate-ca --finish`", c.cert, len(all))
		}
	}
	for _, c := range b.cas() {
		if err := rotateCA(c, now); err != nil {
			return err
		}
	}
	return nil
}

// rotateCA is StartCARotation for one CA.
func rotateCA(c caFile, now time.Time) error {
	data, err := os.ReadFile(c.cert)
	if err != nil {
		return fmt.Errorf("pki: read %s: %w", c.cert, err)
	}
	old, err := loadCA(c.cert, c.key, data, now)
	if err != nil {
		return err
	}
	next, err := readKey(nextKeyPath(c.key))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if next, err = newECKey(); err != nil {
			return fmt.Errorf("pki: generate a key for %s: %w", c.cert, err)
		}
		if err := writeKey(nextKeyPath(c.key), next); err != nil {
			return err
		}
	case err != nil:
		return err
	case publicKeysEqual(old.cert.PublicKey, next.Public()):
		// The key was made the CA's before a crash: only the clean-up is left.
		return removeFile(nextKeyPath(c.key))
	}
	all, err := parseCerts(data)
	if err != nil {
		return fmt.Errorf("pki: parse %s: %w", c.cert, err)
	}
	var newCert *x509.Certificate
	for _, cert := range all {
		if publicKeysEqual(cert.PublicKey, next.Public()) {
			newCert = cert
		}
	}
	if newCert == nil {
		der, err := selfSignedCA(next, c.name, now)
		if err != nil {
			return fmt.Errorf("pki: sign a new CA for %s: %w", c.cert, err)
		}
		if newCert, err = x509.ParseCertificate(der); err != nil {
			return fmt.Errorf("pki: parse the new CA of %s: %w", c.cert, err)
		}
	}
	cross, err := crossSign(newCert, next.Public(), old, now)
	if err != nil {
		return fmt.Errorf("pki: cross-sign the new CA of %s: %w", c.cert, err)
	}
	if err := writeCert(CrossPath(c.cert), cross); err != nil {
		return err
	}
	bundle := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: newCert.Raw})
	bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: old.cert.Raw})...)
	if err := WriteFileAtomic(c.cert, bundle, publicMode); err != nil {
		return err
	}
	if err := writeKey(c.key, next); err != nil {
		return err
	}
	return removeFile(nextKeyPath(c.key))
}

// FinishCARotation ends a CA rotation: each CA file of b keeps only the CA
// that signs (the one of its key), so leaves of the old CAs are no longer
// trusted. The cross certificates stay (CrossPath): leaves keep carrying
// them, for the trust stores that were built before the rotation and do not
// reload (etcd's, until kedge restarts). It returns the CA files it changed.
func FinishCARotation(b Bundle, now time.Time) ([]string, error) {
	var changed []string
	for _, c := range b.cas() {
		data, err := os.ReadFile(c.cert)
		if err != nil {
			return changed, fmt.Errorf("pki: read %s: %w", c.cert, err)
		}
		if _, err := os.Stat(nextKeyPath(c.key)); err == nil {
			return changed, fmt.Errorf("%s: the rotation's first phase did not complete: run `kedge certificate rotate-ca` again", c.cert)
		}
		ca, err := loadCA(c.cert, c.key, data, now)
		if err != nil {
			return changed, err
		}
		if all, _ := parseCerts(data); len(all) == 1 {
			continue
		}
		if err := writeCert(c.cert, ca.cert.Raw); err != nil {
			return changed, err
		}
		changed = append(changed, c.cert)
	}
	return changed, nil
}

// PinnedCA returns the CA certificate a join token pins and the supervisor
// serves at /cacerts, from the server CA file at path: the file's exact
// bytes when it holds one certificate (as before any rotation), or the PEM
// of its first certificate (the new CA) during a rotation, which are the
// bytes FinishCARotation leaves in the file: the token StartCARotation
// makes is still valid after the rotation ends.
func PinnedCA(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: read %s: %w", path, err)
	}
	return PinnedCAOf(data)
}

// PinnedCAOf is PinnedCA for the content of the file.
func PinnedCAOf(data []byte) ([]byte, error) {
	all, err := parseCerts(data)
	if err != nil {
		return nil, err
	}
	if len(all) == 1 {
		return data, nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: all[0].Raw}), nil
}

// selfSignedCA returns a new self-signed CA certificate for key.
func selfSignedCA(key crypto.Signer, name string, now time.Time) ([]byte, error) {
	tmpl, err := caTemplate(key.Public(), name, now)
	if err != nil {
		return nil, err
	}
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
}

// crossSign returns a certificate of newCA's subject and key pub, signed by
// old and valid until old expires.
func crossSign(newCA *x509.Certificate, pub crypto.PublicKey, old *authority, now time.Time) ([]byte, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               newCA.Subject,
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              old.cert.NotAfter,
		KeyUsage:              newCA.KeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          newCA.SubjectKeyId,
		AuthorityKeyId:        old.cert.SubjectKeyId,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, old.cert, pub, old.key)
}

// removeFile removes path; a missing file is no error.
func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pki: remove %s: %w", path, err)
	}
	return nil
}
