package server

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"

	"k8s.io/client-go/kubernetes"

	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/secretsencrypt"
	"github.com/kedge-io/kedge/pkg/token"
)

// EncryptionConfigFile is where a server keeps the apiserver's encryption
// config for Secrets (0600).
func (c Config) EncryptionConfigFile() string {
	return filepath.Join(c.credDir(), secretsencrypt.FileName)
}

// ensureEncryption returns the encryption config the apiserver uses, or ""
// when Secrets are not encrypted. A new cluster (first server, no etcd data
// yet) gets a fresh key unless --secrets-encryption=false; a joining server
// got the cluster's file in its join (joinCluster). A cluster created
// without encryption stays so: the file appears only at creation.
func ensureEncryption(cfg Config, log *slog.Logger) (string, error) {
	file := cfg.EncryptionConfigFile()
	if _, err := os.Stat(file); err == nil {
		if !cfg.SecretsEncryption {
			log.Warn("--secrets-encryption=false has no effect: this cluster encrypts Secrets at rest", "file", file)
		}
		return file, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	_, err := os.Stat(filepath.Join(cfg.dbDir(), "member"))
	newCluster := cfg.JoinURL == "" && errors.Is(err, os.ErrNotExist)
	if !newCluster || !cfg.SecretsEncryption {
		log.Info("Secrets are not encrypted at rest in etcd", "component", "server", "reason", map[bool]string{true: "--secrets-encryption=false", false: "the cluster was created without encryption"}[newCluster])
		return "", nil
	}
	if err := secretsencrypt.Generate(file); err != nil {
		return "", err
	}
	log.Info("Secrets are encrypted at rest in etcd", "component", "server", "provider", secretsencrypt.Provider, "config", file)
	return file, nil
}

// rotatedTokenFile records the hashes of the server tokens `kedge token
// rotate` retired (see token.Retired).
func (c Config) rotatedTokenFile() string { return filepath.Join(c.serverDir(), "token-rotated") }

// newTokenSync returns the component that follows the cluster's server
// token (rotated with `kedge token rotate`).
func newTokenSync(cfg Config, caFile string, tok join.Token, client func() (kubernetes.Interface, error), log *slog.Logger) (*token.Sync, error) {
	return token.NewSync(token.SyncConfig{
		NewClient:   client,
		TokenFile:   cfg.TokenFile(),
		RotatedFile: cfg.rotatedTokenFile(),
		CAFile:      caFile,
		FileSecret:  tok.Secret,
		Log:         log,
	}), nil
}

// AdminKubeconfigFile is the admin kubeconfig of the server with data dir
// dataDir (for the `kedge token` and `kedge secrets-encrypt` commands).
func AdminKubeconfigFile(dataDir string) string { return Config{DataDir: dataDir}.adminKubeconfig() }

// TLSLayout is where the server with data dir dataDir keeps its
// certificates.
func TLSLayout(dataDir string) pki.Bundle { return pki.Layout(Config{DataDir: dataDir}.tlsDir()) }
