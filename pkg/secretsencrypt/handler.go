package secretsencrypt

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"time"

	"k8s.io/apiserver/pkg/server/options/encryptionconfig/controller"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/supervisor"
)

// Path is the supervisor path where a server's encryption config is read
// (GET: its Status, no keys) and replaced (PUT: the new config, answered once
// the local apiserver has loaded it). Only a client certificate of the
// cluster's client CA in group system:masters (the admin's) may call it.
const Path = supervisor.EncryptionPath

// ReloadInterval is how often the apiserver checks the config file for a
// change (upstream: one minute).
const ReloadInterval = 10 * time.Second

// loadTimeout bounds how long a PUT waits for the apiserver to load the file.
const loadTimeout = 4 * ReloadInterval

// SetReloadInterval sets the apiserver's process-wide poll interval of the
// encryption config file to ReloadInterval; call it before the apiserver
// starts.
func SetReloadInterval() { controller.EncryptionConfigFileChangePollDuration = ReloadInterval }

// metricName is the apiserver's gauge of the config it last reloaded.
const metricName = "apiserver_encryption_config_controller_last_config_info"

// Status is a server's view of its encryption config.
type Status struct {
	// Enabled is false when the server has no config (Secrets in clear).
	Enabled bool `json:"enabled"`
	// Provider is "secretbox".
	Provider string `json:"provider,omitempty"`
	// Keys are the key names, the one that encrypts first.
	Keys []string `json:"keys,omitempty"`
	// FileHash is the Hash of the file, LoadedHash that of the config the
	// apiserver uses: equal once a change is loaded.
	FileHash   string `json:"fileHash,omitempty"`
	LoadedHash string `json:"loadedHash,omitempty"`
}

// Handler serves Path for the config file at File.
type Handler struct {
	// File is the encryption config; "" on a server without one.
	File string
	// ClientCA is the cluster's client CA file, which signs the admin's
	// certificate.
	ClientCA string

	startHash string
}

// NewHandler returns the handler; it records the file's hash as the one
// the apiserver loads at start.
func NewHandler(file, clientCA string) *Handler {
	h := &Handler{File: file, ClientCA: clientCA}
	if raw, err := os.ReadFile(file); err == nil {
		h.startHash = Hash(raw)
	}
	return h
}

// ServeHTTP answers GET and PUT.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.admin(r) {
		http.Error(w, "this path needs the cluster admin's client certificate (run `kedge secrets-encrypt` on a server)", http.StatusUnauthorized)
		return
	}
	switch r.Method {
	case http.MethodGet:
		h.writeStatus(w)
	case http.MethodPut:
		if h.File == "" {
			http.Error(w, "this server does not encrypt Secrets (no --encryption-provider-config)", http.StatusConflict)
			return
		}
		raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if _, err := Decode(raw); err != nil {
			http.Error(w, "bad encryption config: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := pki.WriteFileAtomic(h.File, raw, 0o600); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := h.waitLoaded(r.Context(), Hash(raw)); err != nil {
			http.Error(w, err.Error(), http.StatusGatewayTimeout)
			return
		}
		h.writeStatus(w)
	default:
		http.Error(w, "GET or PUT", http.StatusMethodNotAllowed)
	}
}

// Status reads the file and what the apiserver loaded.
func (h *Handler) Status() (Status, error) {
	if h.File == "" {
		return Status{}, nil
	}
	c, raw, err := Read(h.File)
	if err != nil {
		return Status{}, err
	}
	loaded := loadedHash()
	if loaded == "" {
		loaded = h.startHash
	}
	return Status{Enabled: true, Provider: Provider, Keys: KeyNames(c), FileHash: Hash(raw), LoadedHash: loaded}, nil
}

func (h *Handler) writeStatus(w http.ResponseWriter) {
	st, err := h.Status()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}

// waitLoaded waits until the apiserver reports it reloaded the config of
// hash.
func (h *Handler) waitLoaded(ctx context.Context, hash string) error {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		if loadedHash() == hash || h.startHash == hash && loadedHash() == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the apiserver did not load the new encryption config within %s (its reload metric shows %q)", loadTimeout, loadedHash())
		case <-t.C:
		}
	}
}

// loadedHash returns the hash label of the apiserver's reload gauge, or ""
// before its first reload.
func loadedHash() string {
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		return ""
	}
	for _, f := range families {
		if f.GetName() != metricName {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "hash" {
					return l.GetValue()
				}
			}
		}
	}
	return ""
}

// admin reports whether r carries a client certificate of the client CA
// in group system:masters.
func (h *Handler) admin(r *http.Request) bool {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	caPEM, err := os.ReadFile(h.ClientCA)
	if err != nil {
		return false
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return false
	}
	leaf := r.TLS.PeerCertificates[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return false
	}
	return slices.Contains(leaf.Subject.Organization, "system:masters")
}

// ErrDisabled is the error of a command on a cluster that does not encrypt.
var ErrDisabled = errors.New("this cluster does not encrypt Secrets at rest (it was created with --secrets-encryption=false, or before kedge encrypted them)")
