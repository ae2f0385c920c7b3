package certs

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kedge-io/kedge/pkg/pki"
)

// Files of a rotation request, under the data dir.
const (
	// RequestFileName is where `kedge certificate rotate` leaves its
	// request for the running kedge (JSON Request, 0600).
	RequestFileName = "certificate-rotate.json"
	// ResultFileName is where the running kedge answers it (JSON Result).
	ResultFileName = "certificate-rotate.result.json"
)

// Request asks the running kedge to issue the leaves of Services again
// (empty: every service).
type Request struct {
	ID       string   `json:"id"`
	Services []string `json:"services,omitempty"`
	// CA, if set, asks for a phase of a CA rotation instead (CAStart or
	// CAFinish; `kedge certificate rotate-ca`); Force skips the checks of
	// CAFinish.
	CA    string `json:"ca,omitempty"`
	Force bool   `json:"force,omitempty"`
}

// Phases of a CA rotation (Request.CA).
const (
	// CAStart replaces the CAs: new CAs, bundles of new and old, every
	// leaf issued again by the new CAs.
	CAStart = "start"
	// CAFinish drops the old CAs from the bundles.
	CAFinish = "finish"
)

// Result is the running kedge's answer to the Request with the same ID.
type Result struct {
	ID     string   `json:"id"`
	Issued []Issued `json:"issued"`
	// Servers is, for a CA rotation, the phase each server of the cluster
	// reported ("" for none yet).
	Servers map[string]string `json:"servers,omitempty"`
	Error   string            `json:"error,omitempty"`
}

// Issued is one leaf issued again: its certificate file and why.
type Issued struct {
	File   string `json:"file"`
	Reason string `json:"reason"`
}

// WriteRequest leaves a request for services in dataDir and returns it.
func WriteRequest(dataDir string, services []string) (Request, error) {
	if err := pki.CheckServices(services); err != nil {
		return Request{}, fmt.Errorf("--service: %w", err)
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return Request{}, err
	}
	r := Request{ID: hex.EncodeToString(id), Services: services}
	data, err := json.Marshal(r)
	if err != nil {
		return r, err
	}
	if _, err := os.Stat(filepath.Join(dataDir, "server")); err != nil {
		if _, err2 := os.Stat(filepath.Join(dataDir, "agent")); err2 != nil {
			return r, fmt.Errorf("--data-dir %s holds no kedge server or agent state: %w", dataDir, err)
		}
	}
	return r, pki.WriteFileAtomic(filepath.Join(dataDir, RequestFileName), data, 0o600)
}

// WriteCARequest leaves a request for a phase of a CA rotation (CAStart,
// CAFinish) in dataDir, which must be a server's, and returns it.
func WriteCARequest(dataDir, phase string, force bool) (Request, error) {
	if phase != CAStart && phase != CAFinish {
		return Request{}, fmt.Errorf("CA rotation phase %q: want %q or %q", phase, CAStart, CAFinish)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "server", "tls")); err != nil {
		return Request{}, fmt.Errorf("--data-dir %s holds no kedge server state: CAs are rotated on a server: %w", dataDir, err)
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return Request{}, err
	}
	r := Request{ID: hex.EncodeToString(id), CA: phase, Force: force}
	data, err := json.Marshal(r)
	if err != nil {
		return r, err
	}
	return r, pki.WriteFileAtomic(filepath.Join(dataDir, RequestFileName), data, 0o600)
}

// ReadResult returns the answer to the request with id, or nil while
// there is none.
func ReadResult(dataDir, id string) (*Result, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, ResultFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil || r.ID != id {
		return nil, nil //nolint:nilerr // an older or half-written answer: not ours yet
	}
	return &r, nil
}

// takeRequest reads and removes a pending request; nil if there is none.
func takeRequest(dataDir string) (*Request, error) {
	path := filepath.Join(dataDir, RequestFileName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Request
	jerr := json.Unmarshal(data, &r)
	if err := os.Remove(path); err != nil {
		return nil, err
	}
	if jerr != nil {
		return nil, fmt.Errorf("%s: %w", path, jerr)
	}
	if err := pki.CheckServices(r.Services); err != nil {
		return &r, fmt.Errorf("%s: %w", path, err)
	}
	if r.CA != "" && r.CA != CAStart && r.CA != CAFinish {
		return &r, fmt.Errorf("%s: CA rotation phase %q: want %q or %q", path, r.CA, CAStart, CAFinish)
	}
	return &r, nil
}

// writeResult answers a request.
func writeResult(dataDir string, r Result) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return pki.WriteFileAtomic(filepath.Join(dataDir, ResultFileName), data, 0o600)
}
