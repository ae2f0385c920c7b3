package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"strconv"
	"time"
)

// authority is a loaded CA: its certificate and the key that signs with it.
type authority struct {
	cert     *x509.Certificate
	key      crypto.Signer
	certPath string
	// chain holds DER certificates appended to every leaf it signs: the
	// cross-signed copy of cert during and after a CA rotation (see
	// StartCARotation), so that a trust store that still holds only the
	// previous CA verifies the new leaves.
	chain [][]byte
}

// loadOrCreateCA loads the CA at certPath/keyPath, or creates a self-signed
// one named "<name>@<unix time>" if certPath does not exist. An existing CA
// is never replaced: a missing or mismatched key is an error.
//
// The key is written before the certificate, so a crash in between leaves a
// lone key; the next run signs a new certificate with it.
func loadOrCreateCA(certPath, keyPath, name string, now time.Time) (*authority, error) {
	certPEM, err := os.ReadFile(certPath)
	switch {
	case err == nil:
		return loadCA(certPath, keyPath, certPEM, now)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("pki: read %s: %w", certPath, err)
	}

	key, err := readKey(keyPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if key, err = newECKey(); err != nil {
			return nil, fmt.Errorf("pki: generate key for %s: %w", keyPath, err)
		}
		if err := writeKey(keyPath, key); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	}

	tmpl, err := caTemplate(key.Public(), name, now)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", certPath, err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign %s: %w", certPath, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse %s: %w", certPath, err)
	}
	if err := writeCert(certPath, der); err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key, certPath: certPath}, nil
}

// caTemplate is the template of a new self-signed CA "<name>@<unix time>"
// for pub, valid for ten years.
func caTemplate(pub crypto.PublicKey, name string, now time.Time) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	skid, err := keyID(pub)
	if err != nil {
		return nil, fmt.Errorf("key id: %w", err)
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name + "@" + strconv.FormatInt(now.Unix(), 10)},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.AddDate(caValidityYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          skid,
	}, nil
}

// loadCA parses an existing CA file and checks its key. The file may be a
// bundle (during a CA rotation: the new CA and the previous one): the CA
// that signs is the certificate that matches the key.
func loadCA(certPath, keyPath string, certPEM []byte, now time.Time) (*authority, error) {
	all, err := parseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: parse %s: %w", certPath, err)
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, err
	}
	var cert *x509.Certificate
	for _, c := range all {
		if publicKeyMatches(c, key) {
			cert = c
			break
		}
	}
	if cert == nil {
		return nil, fmt.Errorf("pki: %s does not match %s", keyPath, certPath)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("pki: %s is not a CA certificate", certPath)
	}
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("pki: CA %s expired at %s", certPath, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	a := &authority{cert: cert, key: key, certPath: certPath}
	if a.chain, err = crossChain(certPath, cert, now); err != nil {
		return nil, err
	}
	return a, nil
}

// publicKeyMatches reports whether key is the private half of cert's key.
func publicKeyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	return publicKeysEqual(cert.PublicKey, key.Public())
}

// newECKey generates an ECDSA P-256 key.
func newECKey() (crypto.Signer, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// randomSerial returns a random, positive, 128-bit serial number.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, err
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// keyID derives a key identifier from a public key: the SHA-256 of the
// subjectPublicKey bits, truncated to 160 bits (RFC 7093, method 1).
func keyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}
