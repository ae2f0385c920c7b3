// Package etcd runs an embedded etcd member (go.etcd.io/etcd/server/v3/embed)
// with TLS and client-certificate authentication, as a kedge component.
//
//	e := etcd.New(etcd.Config{Name: "node1", DataDir: dir, AdvertiseIP: ip, TLS: tls})
//	if err := e.Start(ctx); err != nil { ... }
//	_ = e.Ready(ctx)
//	defer e.Stop(ctx)
package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/yaml"

	"github.com/kedge-io/kedge/pkg/component"
)

// Ports etcd listens on.
const (
	ClientPort = 2379
	PeerPort   = 2380
)

// TLS holds the certificate files etcd serves and verifies with.
type TLS struct {
	ServerCA, ServerCert, ServerKey string // client-facing: CA that signs clients, serving cert
	PeerCA, PeerCert, PeerKey       string // member-to-member
}

// Config describes one etcd member.
type Config struct {
	Name        string // member name, the node name
	DataDir     string // <data-dir>/server/db
	AdvertiseIP net.IP // the address other members and the apiservers reach
	TLS         TLS
	// ExtraArgs are the user's --etcd-arg key=value overrides, with the keys
	// of etcd's configuration file (e.g. quota-backend-bytes=4294967296).
	ExtraArgs []string
	// InitialCluster is the cluster this member starts into, as etcd's
	// initial-cluster (name=peerURL,...); empty means a new cluster of this
	// member alone. It matters only on the first start (no data dir yet).
	InitialCluster string
	// ClusterState is etcd's initial-cluster-state: "new" (empty) or
	// "existing" (a member joining a running cluster as a learner; Ready
	// then also promotes it to a voting member).
	ClusterState string
	// ForceNewCluster starts the member as a new single-member cluster
	// with its data kept (etcd's force-new-cluster; --cluster-reset).
	ForceNewCluster bool
	Debug           bool
	Log             *slog.Logger
}

// ClientURL is the URL the local apiserver uses to reach this member.
func (c Config) ClientURL() string {
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ClientPort))
}

// Etcd is the embedded etcd component.
type Etcd struct {
	cfg     Config
	closing atomic.Bool
	removed atomic.Bool
	mu      sync.Mutex
	e       *embed.Etcd
	errc    chan error
}

var _ component.Component = (*Etcd)(nil)
var _ component.Failer = (*Etcd)(nil)

// New returns an etcd component; nothing runs until Start.
func New(cfg Config) *Etcd { return &Etcd{cfg: cfg, errc: make(chan error, 1)} }

// Name implements component.Component.
func (*Etcd) Name() string { return "etcd" }

// Start renders etcd's configuration and starts the member.
func (m *Etcd) Start(ctx context.Context) error {
	settings, err := m.settings()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	path := filepath.Join(m.cfg.DataDir, "config.yaml")
	raw, err := yaml.Marshal(settings)
	if err != nil {
		return fmt.Errorf("etcd: render config: %w", err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return fmt.Errorf("etcd: write %s: %w", path, err)
	}
	cfg, err := embed.ConfigFromFile(path)
	if err != nil {
		return fmt.Errorf("etcd: config %s: %w", path, err)
	}
	level := zapcore.WarnLevel
	if m.cfg.Debug {
		level = zapcore.InfoLevel
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(&slogCore{
		log: m.cfg.Log.With("component", "etcd"), level: level, closing: &m.closing, removed: &m.removed,
		throttle: newThrottle(time.Minute),
	}, zap.WithPanicHook(removedPanicHook{})))
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcd: start: %w", err)
	}
	m.mu.Lock()
	m.e = e
	m.mu.Unlock()
	go m.watch(e)
	m.cfg.Log.Info("etcd started", "component", "etcd", "name", m.cfg.Name, "dir", m.cfg.DataDir, "client", m.cfg.ClientURL())
	return nil
}

// settings returns etcd's configuration file contents: kedge's defaults with
// the user's --etcd-arg values applied over them.
func (m *Etcd) settings() (map[string]any, error) {
	ip := m.cfg.AdvertiseIP.String()
	peerURL := "https://" + net.JoinHostPort(ip, strconv.Itoa(PeerPort))
	clientURL := "https://" + net.JoinHostPort(ip, strconv.Itoa(ClientPort))
	initialCluster, state := m.cfg.InitialCluster, m.cfg.ClusterState
	if initialCluster == "" {
		initialCluster = m.cfg.Name + "=" + peerURL
	}
	if state == "" {
		state = "new"
	}
	listenClient := m.cfg.ClientURL()
	if !m.cfg.AdvertiseIP.IsLoopback() {
		listenClient += "," + clientURL
	}
	s := map[string]any{
		"name":                        m.cfg.Name,
		"data-dir":                    filepath.Join(m.cfg.DataDir, "etcd"),
		"listen-client-urls":          listenClient,
		"advertise-client-urls":       clientURL,
		"listen-peer-urls":            peerURL,
		"initial-advertise-peer-urls": peerURL,
		"initial-cluster":             initialCluster,
		"initial-cluster-state":       state,
		"listen-metrics-urls":         "http://127.0.0.1:2381",
		// Only for what etcd logs before kedge's logger takes over (Start).
		"log-level":          "error",
		"snapshot-count":     10000,
		"heartbeat-interval": 100,
		"election-timeout":   1000,
		"client-transport-security": map[string]any{
			"cert-file":        m.cfg.TLS.ServerCert,
			"key-file":         m.cfg.TLS.ServerKey,
			"trusted-ca-file":  m.cfg.TLS.ServerCA,
			"client-cert-auth": true,
		},
		"peer-transport-security": map[string]any{
			"cert-file":        m.cfg.TLS.PeerCert,
			"key-file":         m.cfg.TLS.PeerKey,
			"trusted-ca-file":  m.cfg.TLS.PeerCA,
			"client-cert-auth": true,
		},
	}
	if m.cfg.ForceNewCluster {
		s["force-new-cluster"] = true
	}
	known := knownKeys()
	for _, kv := range m.cfg.ExtraArgs {
		key, value, ok := strings.Cut(kv, "=")
		key = strings.TrimLeft(strings.TrimSpace(key), "-")
		if !ok || key == "" {
			return nil, fmt.Errorf("--etcd-arg %q: want key=value", kv)
		}
		if !known[key] {
			return nil, fmt.Errorf("--etcd-arg %q: etcd has no setting %q", kv, key)
		}
		var v any
		if err := yaml.Unmarshal([]byte(value), &v); err != nil || v == nil {
			v = value
		}
		s[key] = v
	}
	return s, nil
}

// knownKeys lists the keys of etcd's configuration file.
func knownKeys() map[string]bool {
	keys := map[string]bool{
		"listen-peer-urls": true, "listen-client-urls": true, "listen-client-http-urls": true,
		"initial-advertise-peer-urls": true, "advertise-client-urls": true, "listen-metrics-urls": true,
		"cors": true, "host-whitelist": true, "feature-gates": true,
		"client-transport-security": true, "peer-transport-security": true,
	}
	t := reflect.TypeOf(embed.Config{})
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			keys[name] = true
		}
	}
	return keys
}

// ErrRemoved means this member was removed from the cluster's etcd (by
// `kedge etcd member-remove`, or because its server's Node was deleted)
// and etcd stopped: its data dir can never serve again.
var ErrRemoved = errors.New("this server was removed from the cluster's etcd membership")

// watch reports the member's failure: a listener error, or etcd stopping
// by itself — ErrRemoved when it stopped because it was removed.
func (m *Etcd) watch(e *embed.Etcd) {
	var err error
	select {
	case lerr, ok := <-e.Err():
		if !ok || lerr == nil {
			return
		}
		err = lerr
	case <-e.Server.StopNotify():
		err = errors.New("etcd: the member stopped")
	}
	if m.closing.Load() {
		return
	}
	if m.removed.Load() {
		err = ErrRemoved
	}
	select {
	case m.errc <- err:
	default:
	}
}

// Ready waits until the member has joined the cluster and serves.
func (m *Etcd) Ready(ctx context.Context) error {
	m.mu.Lock()
	e := m.e
	m.mu.Unlock()
	if e == nil {
		return errors.New("etcd: not started")
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-ctx.Done():
		return fmt.Errorf("etcd: waiting for ready: %w", ctx.Err())
	}
	return m.promote(ctx, e)
}

// Err reports a failure of the running member.
func (m *Etcd) Err() <-chan error { return m.errc }

// Stop closes the member cleanly: in-flight requests finish, the WAL and
// database are synced and closed.
func (m *Etcd) Stop(ctx context.Context) error {
	m.mu.Lock()
	e := m.e
	m.e = nil
	m.mu.Unlock()
	if e == nil {
		return nil
	}
	m.closing.Store(true)
	done := make(chan struct{})
	go func() { e.Close(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("etcd: close: %w", ctx.Err())
	}
}
