package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
)

// serviceAccountKeyBits is the size of the generated service-account key.
const serviceAccountKeyBits = 2048

// ensureServiceAccountKey generates the RSA key that signs service account
// tokens if keyPath does not exist, and (re)writes pubPath from the key
// unless it already holds the matching public key. An existing key is never
// replaced; one that cannot be parsed is an error.
func ensureServiceAccountKey(keyPath, pubPath string) error {
	key, err := readKey(keyPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		rsaKey, err := rsa.GenerateKey(rand.Reader, serviceAccountKeyBits)
		if err != nil {
			return fmt.Errorf("pki: generate key for %s: %w", keyPath, err)
		}
		if err := writeKey(keyPath, rsaKey); err != nil {
			return err
		}
		key = rsaKey
	case err != nil:
		return err
	}

	data, err := readOptional(pubPath)
	if err != nil {
		return err
	}
	if data != nil {
		if pub, err := parsePublicKey(data); err == nil && publicKeysEqual(pub, key.Public()) {
			return nil
		}
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("pki: encode %s: %w", pubPath, err)
	}
	return WriteFileAtomic(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), publicMode)
}

// parsePublicKey returns the first public key in PEM data, in PKIX or
// PKCS#1 form.
func parsePublicKey(data []byte) (crypto.PublicKey, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no public key PEM block")
		}
		switch block.Type {
		case "PUBLIC KEY":
			return x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			return x509.ParsePKCS1PublicKey(block.Bytes)
		}
	}
}

// publicKeysEqual reports whether a and b are the same public key.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
