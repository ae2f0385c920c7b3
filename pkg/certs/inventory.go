package certs

import (
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
)

// Cert is one certificate kedge issued, as `kedge certificate check` lists it.
type Cert struct {
	// File is the PEM file, or the kubeconfig that embeds the certificate.
	File string `json:"file"`
	// User is, for a certificate embedded in a kubeconfig, its user entry.
	User      string    `json:"user,omitempty"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	CA        bool      `json:"ca"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`

	cert *x509.Certificate
}

// Label is the file label of the certificate's metric: the file, and for an
// embedded certificate the kubeconfig's user after a '#'.
func (c Cert) Label() string {
	if c.User != "" {
		return c.File + "#" + c.User
	}
	return c.File
}

// Certificate returns the parsed certificate.
func (c Cert) Certificate() *x509.Certificate { return c.cert }

// Paths says where a node's certificates are.
type Paths struct {
	// DataDir is kedge's --data-dir: its server/tls, server/tls/etcd and
	// agent/tls directories hold the PEM files, server/cred and agent/etc
	// the in-process kubeconfigs.
	DataDir string
	// Kubeconfigs are more kubeconfigs whose embedded client certificates
	// are listed, e.g. --write-kubeconfig's /etc/kedge/kedge.yaml. A
	// missing one is skipped.
	Kubeconfigs []string
}

// Scan lists every certificate under p, sorted by file: each certificate
// of every *.crt file (a CA bundle has several; of a leaf file only the
// leaf, not its chain; no CA rotation's *.cross.crt) and each client
// certificate embedded in a kubeconfig. Certificates a kubeconfig references by path
// are listed as their file.
func Scan(p Paths) ([]Cert, error) {
	var out []Cert
	for _, dir := range []string{
		filepath.Join(p.DataDir, "server", "tls"),
		filepath.Join(p.DataDir, "server", "tls", "etcd"),
		filepath.Join(p.DataDir, "agent", "tls"),
	} {
		files, err := filepath.Glob(filepath.Join(dir, "*.crt"))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if strings.HasSuffix(f, ".cross.crt") {
				continue // a CA rotation's cross certificate: it expires with the old CA, and nothing needs it renewed
			}
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", f, err)
			}
			certs, err := certutil.ParseCertsPEM(data)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if !certs[0].IsCA {
				certs = certs[:1] // a leaf and its chain (the cross certificate after a CA rotation): the leaf
			}
			for _, c := range certs {
				out = append(out, newCert(f, "", c))
			}
		}
	}
	kubeconfigs := slices.Clone(p.Kubeconfigs)
	for _, dir := range []string{filepath.Join(p.DataDir, "server", "cred"), filepath.Join(p.DataDir, "agent", "etc")} {
		files, err := filepath.Glob(filepath.Join(dir, "*.kubeconfig"))
		if err != nil {
			return nil, err
		}
		kubeconfigs = append(kubeconfigs, files...)
	}
	for _, f := range kubeconfigs {
		cfg, err := clientcmd.LoadFromFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", f, err)
		}
		for user, auth := range cfg.AuthInfos {
			if len(auth.ClientCertificateData) == 0 {
				continue
			}
			certs, err := certutil.ParseCertsPEM(auth.ClientCertificateData)
			if err != nil {
				return nil, fmt.Errorf("kubeconfig %s, user %s: %w", f, user, err)
			}
			out = append(out, newCert(f, user, certs[0]))
		}
	}
	slices.SortStableFunc(out, func(a, b Cert) int {
		if a.File != b.File {
			return compare(a.File, b.File)
		}
		return compare(a.User, b.User)
	})
	return out, nil
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func newCert(file, user string, c *x509.Certificate) Cert {
	return Cert{
		File: file, User: user,
		Subject: c.Subject.String(), Issuer: c.Issuer.String(),
		Serial: hex.EncodeToString(c.SerialNumber.Bytes()), CA: c.IsCA,
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), cert: c,
	}
}
