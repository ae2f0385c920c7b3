package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

// File modes of everything pki writes.
const (
	dirMode    fs.FileMode = 0o700
	keyMode    fs.FileMode = 0o600
	publicMode fs.FileMode = 0o644
)

// mkdirPrivate creates dir and its missing parents with mode 0700.
func mkdirPrivate(dir string) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("pki: create %s: %w", dir, err)
	}
	return nil
}

// WriteFileAtomic writes data to path with the given mode through a
// temporary file in the same directory and a rename, so readers see either
// the old or the new content, never a part. Missing parent directories are
// created with mode 0700. A file that already has this content and mode is
// left alone.
func WriteFileAtomic(path string, data []byte, mode fs.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm() == mode.Perm() {
			return nil
		}
	}
	dir := filepath.Dir(path)
	if err := mkdirPrivate(dir); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode.Perm()); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	ok = true
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable. It is best effort: the rename has
// already happened, and some file systems cannot sync a directory.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// writeCert writes one DER certificate as PEM with mode 0644.
func writeCert(path string, der []byte) error {
	return WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), publicMode)
}

// writeLeafCert writes a leaf's DER certificate followed by its chain (the
// cross-signed CA after a rotation) as PEM with mode 0644.
func writeLeafCert(path string, der []byte, chain [][]byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for _, c := range chain {
		data = append(data, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	return WriteFileAtomic(path, data, publicMode)
}

// writeKey writes a private key as PEM with mode 0600: ECDSA keys as SEC 1
// ("EC PRIVATE KEY"), RSA keys as PKCS#1 ("RSA PRIVATE KEY").
func writeKey(path string, key crypto.Signer) error {
	var block *pem.Block
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return fmt.Errorf("pki: encode %s: %w", path, err)
		}
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	case *rsa.PrivateKey:
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	default:
		return fmt.Errorf("pki: encode %s: unsupported key type %T", path, key)
	}
	return WriteFileAtomic(path, pem.EncodeToMemory(block), keyMode)
}

// readKey reads and parses the PEM private key at path. A missing file
// yields an error that matches fs.ErrNotExist.
func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: read %s: %w", path, err)
	}
	key, err := parsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("pki: parse %s: %w", path, err)
	}
	return key, nil
}

// parseCert returns the first certificate in PEM data.
func parseCert(data []byte) (*x509.Certificate, error) {
	all, err := parseCerts(data)
	if err != nil {
		return nil, err
	}
	return all[0], nil
}

// parseCerts returns every certificate in PEM data, at least one.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	return certutil.ParseCertsPEM(data)
}

// parsePrivateKey returns the first private key in PEM data, in SEC 1,
// PKCS#1 or PKCS#8 form.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	key, err := keyutil.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	return signer, nil
}
