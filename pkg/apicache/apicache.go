// Package apicache is the kubelet's API cache on an agent: an HTTPS proxy
// on loopback, in front of the apiserver load balancer, that only the
// node's kubelet (its client certificate, system:node:<name>) may use. It
// forwards every request with the kubelet's own certificate, and keeps what
// the kubelet needs to run its pods without a server: the answers to its
// LISTs and WATCHes (its pods, its Node, Services, the Secrets and
// ConfigMaps of its pods …), its GETs and the service account tokens of
// its pods, on disk (0600) under the agent's data dir. When no server
// answers, it serves reads from that cache and holds watches open; writes
// fail as they would without it. When a server answers again, it closes
// the watches it held, so that the kubelet watches the live API again.
//
// Everything cached was answered to the kubelet's credentials, which the
// node authorizer limits to this node's pods, so nothing of another node is
// kept.
//
//	c := apicache.New(apicache.Config{Listen: apicache.Address, Upstream: "https://127.0.0.1:6444", …})
//	_ = c.Start(ctx) // then the kubelet's kubeconfig names c.URL() and c.CAFile()
package apicache

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	certutil "k8s.io/client-go/util/cert"

	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/pki"
)

// Address is where the kubelet's API cache listens on an agent.
const Address = "127.0.0.1:6445"

// Config describes the cache.
type Config struct {
	Listen   string // loopback host:port, e.g. Address
	Upstream string // the apiservers, e.g. the load balancer's https://127.0.0.1:6444
	// Dir holds the serving certificate of the loopback endpoint (its own
	// CA, made on first start) and the cache (Dir/objects).
	Dir      string
	NodeName string
	// ClientCert and ClientKey are the kubelet's client certificate (read
	// again for each new connection: renewals apply); ServerCA verifies the
	// apiservers; ClientCA verifies the kubelet.
	ClientCert, ClientKey, ServerCA, ClientCA string
	// PruneAfter drops what the kubelet has not asked for in that long
	// while a server answers (default 1 h); the cache is never pruned
	// offline.
	PruneAfter time.Duration
	// ProbeInterval is how often, offline, the upstream is asked whether
	// it is back (default 1 s).
	ProbeInterval time.Duration
	Log           *slog.Logger
}

// Cache is the component.
type Cache struct {
	cfg    Config
	proxy  *proxy
	srv    *http.Server
	ln     net.Listener
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ component.Component = (*Cache)(nil)

// New returns the cache; nothing listens until Start.
func New(cfg Config) *Cache {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.PruneAfter == 0 {
		cfg.PruneAfter = time.Hour
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = time.Second
	}
	return &Cache{cfg: cfg}
}

// Name implements component.Component.
func (*Cache) Name() string { return "kubelet-apicache" }

// URL is the server URL of the kubelet's kubeconfig.
func (c *Cache) URL() string { return "https://" + c.cfg.Listen }

// CAFile is the CA of the loopback endpoint's serving certificate, for the
// kubelet's kubeconfig.
func (c *Cache) CAFile() string { return filepath.Join(c.cfg.Dir, "serving-ca.crt") }

func (c *Cache) servingFiles() (cert, key string) {
	return filepath.Join(c.cfg.Dir, "serving.crt"), filepath.Join(c.cfg.Dir, "serving.key")
}

// EnsureServingCert makes the loopback endpoint's certificate and its CA
// (10 years, the CA's key is not kept) unless they exist and are valid for
// another 30 days. The kubelet's kubeconfig needs CAFile before Start.
func (c *Cache) EnsureServingCert() error {
	certFile, keyFile := c.servingFiles()
	if pair, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil && time.Until(leaf.NotAfter) > 30*24*time.Hour {
			if _, err := os.Stat(c.CAFile()); err == nil {
				return nil
			}
		}
	}
	host, _, err := net.SplitHostPort(c.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", c.cfg.Listen, err)
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKeyWithOptions(certutil.SelfSignedCertKeyOptions{
		Host: host, AlternateDNS: []string{"localhost"}, MaxAge: 10 * 365 * 24 * time.Hour,
	})
	if err != nil {
		return err
	}
	// The chain is the leaf, then its CA.
	leafBlock, rest := pem.Decode(certPEM)
	caBlock, _ := pem.Decode(rest)
	if leafBlock == nil || caBlock == nil {
		return errors.New("serving certificate: no CA in the generated chain")
	}
	if err := pki.WriteFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(c.CAFile(), pem.EncodeToMemory(caBlock), 0o644); err != nil {
		return err
	}
	return pki.WriteFileAtomic(certFile, certPEM, 0o644)
}

// Start loads the cache from disk and serves on Listen.
func (c *Cache) Start(ctx context.Context) error {
	if err := c.EnsureServingCert(); err != nil {
		return err
	}
	certFile, keyFile := c.servingFiles()
	serving, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("serving certificate %s: %w", certFile, err)
	}
	clientCAs, err := loadPool(c.cfg.ClientCA)
	if err != nil {
		return err
	}
	serverCAs, err := loadPool(c.cfg.ServerCA)
	if err != nil {
		return err
	}
	st, err := openStore(filepath.Join(c.cfg.Dir, "objects"), c.cfg.Log)
	if err != nil {
		return err
	}
	upstream := &http.Transport{
		Proxy:               nil,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 5 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig: &tls.Config{
			RootCAs:    serverCAs,
			MinVersion: tls.VersionTLS12,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				pair, err := tls.LoadX509KeyPair(c.cfg.ClientCert, c.cfg.ClientKey)
				if err != nil {
					return nil, fmt.Errorf("the kubelet's client certificate: %w", err)
				}
				return &pair, nil
			},
		},
	}
	p, err := newProxy(c.cfg, st, upstream)
	if err != nil {
		return err
	}
	c.proxy = p
	ln, err := net.Listen("tcp", c.cfg.Listen)
	if err != nil {
		return err
	}
	c.ln = ln
	c.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(c.cfg.Log.Handler(), slog.LevelDebug),
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{serving},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    clientCAs,
		},
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	c.wg.Add(3)
	go func() { defer c.wg.Done(); _ = c.srv.ServeTLS(ln, "", "") }()
	go func() { defer c.wg.Done(); p.probeLoop(runCtx) }()
	go func() { defer c.wg.Done(); p.flushLoop(runCtx) }()
	c.cfg.Log.Info("kubelet API cache listening", "address", c.cfg.Listen, "upstream", c.cfg.Upstream, "cached", st.len())
	return nil
}

// Ready returns at once: Start listens.
func (*Cache) Ready(context.Context) error { return nil }

// Stop closes the listener and every open request, and writes the cache.
func (c *Cache) Stop(ctx context.Context) error {
	if c.cancel == nil {
		return nil
	}
	c.cancel()
	c.proxy.closeHeld()
	err := c.srv.Close()
	c.wg.Wait()
	return errors.Join(err, c.proxy.st.flush(0))
}

// loadPool reads a PEM bundle of CAs.
func loadPool(path string) (*x509.CertPool, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw) {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
}
