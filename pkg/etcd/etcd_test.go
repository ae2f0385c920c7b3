package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"sigs.k8s.io/yaml"

	"github.com/kedge-io/kedge/pkg/pki"
)

func testTLS() TLS {
	return TLS{
		ServerCA: "/tls/etcd/server-ca.crt", ServerCert: "/tls/etcd/server.crt", ServerKey: "/tls/etcd/server.key",
		PeerCA: "/tls/etcd/peer-ca.crt", PeerCert: "/tls/etcd/peer.crt", PeerKey: "/tls/etcd/peer.key",
	}
}

func TestSettings(t *testing.T) {
	const dataDir = "/data/server/db"
	cases := []struct {
		name    string
		ip      string
		extra   []string
		join    [2]string      // InitialCluster, ClusterState
		want    map[string]any // top-level key → value
		wantErr []string
	}{
		{
			name: "defaults with a routable advertise IP",
			ip:   "192.0.2.10",
			want: map[string]any{
				"name":                        "node-1",
				"data-dir":                    dataDir + "/etcd",
				"listen-client-urls":          "https://127.0.0.1:2379,https://192.0.2.10:2379",
				"advertise-client-urls":       "https://192.0.2.10:2379",
				"listen-peer-urls":            "https://192.0.2.10:2380",
				"initial-advertise-peer-urls": "https://192.0.2.10:2380",
				"initial-cluster":             "node-1=https://192.0.2.10:2380",
				"initial-cluster-state":       "new",
				"listen-metrics-urls":         "http://127.0.0.1:2381",
				"client-transport-security": map[string]any{
					"cert-file": "/tls/etcd/server.crt", "key-file": "/tls/etcd/server.key",
					"trusted-ca-file": "/tls/etcd/server-ca.crt", "client-cert-auth": true,
				},
				"peer-transport-security": map[string]any{
					"cert-file": "/tls/etcd/peer.crt", "key-file": "/tls/etcd/peer.key",
					"trusted-ca-file": "/tls/etcd/peer-ca.crt", "client-cert-auth": true,
				},
			},
		},
		{
			name: "loopback advertise IP is listened on once",
			ip:   "127.0.0.1",
			want: map[string]any{
				"listen-client-urls":    "https://127.0.0.1:2379",
				"advertise-client-urls": "https://127.0.0.1:2379",
				"listen-peer-urls":      "https://127.0.0.1:2380",
			},
		},
		{
			name: "IPv6 advertise IP in brackets",
			ip:   "2001:db8::1",
			want: map[string]any{
				"listen-client-urls": "https://127.0.0.1:2379,https://[2001:db8::1]:2379",
				"initial-cluster":    "node-1=https://[2001:db8::1]:2380",
			},
		},
		{
			name: "etcd-arg values are typed: integer, boolean, duration string; dashes optional",
			ip:   "192.0.2.10",
			extra: []string{"quota-backend-bytes=4294967296", "--enable-pprof=true", "auto-compaction-retention=1h",
				"log-level=warn", "initial-cluster-token=kedge"},
			want: map[string]any{
				"quota-backend-bytes":       int64(4294967296),
				"enable-pprof":              true,
				"auto-compaction-retention": "1h",
				"log-level":                 "warn",
				"initial-cluster-token":     "kedge",
				"name":                      "node-1",
			},
		},
		{
			name: "a joining member starts into the existing cluster",
			ip:   "192.0.2.11",
			join: [2]string{"node-0=https://192.0.2.10:2380,node-1=https://192.0.2.11:2380", "existing"},
			want: map[string]any{
				"initial-cluster":             "node-0=https://192.0.2.10:2380,node-1=https://192.0.2.11:2380",
				"initial-cluster-state":       "existing",
				"initial-advertise-peer-urls": "https://192.0.2.11:2380",
			},
		},
		{
			name:    "unknown key names --etcd-arg and the key",
			ip:      "192.0.2.10",
			extra:   []string{"bogus-key=1"},
			wantErr: []string{"--etcd-arg", `"bogus-key=1"`, `"bogus-key"`},
		},
		{
			name:    "missing = is an error",
			ip:      "192.0.2.10",
			extra:   []string{"quota-backend-bytes"},
			wantErr: []string{"--etcd-arg", `"quota-backend-bytes"`, "key=value"},
		},
		{
			name:    "empty key is an error",
			ip:      "192.0.2.10",
			extra:   []string{"--=1"},
			wantErr: []string{"--etcd-arg", "key=value"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := New(Config{Name: "node-1", DataDir: dataDir, AdvertiseIP: net.ParseIP(tc.ip), TLS: testTLS(), ExtraArgs: tc.extra,
				InitialCluster: tc.join[0], ClusterState: tc.join[1]})
			s, err := m.settings()
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error; settings %v", s)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, want := range tc.want {
				if got := normalize(s[k]); !reflect.DeepEqual(got, normalize(want)) {
					t.Errorf("%s = %#v, want %#v", k, s[k], want)
				}
			}
		})
	}
}

// normalize turns whole-number floats into int64, so that a value parsed from
// YAML compares equal to the integer it stands for, whatever numeric type the
// parser chose.
func normalize(v any) any {
	switch t := v.(type) {
	case float64:
		if t == float64(int64(t)) {
			return int64(t)
		}
	case int:
		return int64(t)
	}
	return v
}

// TestSettingsParseAsEtcdConfig renders the settings to a file as Start does
// and checks that etcd's own config loader reads back the intended values:
// every kedge key is one etcd knows and the types fit.
func TestSettingsParseAsEtcdConfig(t *testing.T) {
	dir := t.TempDir()
	m := New(Config{Name: "node-1", DataDir: dir, AdvertiseIP: net.ParseIP("192.0.2.10"), TLS: testTLS(),
		ExtraArgs: []string{"quota-backend-bytes=4294967296", "snapshot-count=5000", "max-request-bytes=2097152"}})
	s, err := m.settings()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := yaml.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := embed.ConfigFromFile(path)
	if err != nil {
		t.Fatalf("etcd rejects the rendered config: %v\n%s", err, raw)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Name", cfg.Name, "node-1"},
		{"Dir", cfg.Dir, filepath.Join(dir, "etcd")},
		{"QuotaBackendBytes", cfg.QuotaBackendBytes, int64(4294967296)},
		{"SnapshotCount", cfg.SnapshotCount, uint64(5000)},
		{"MaxRequestBytes", cfg.MaxRequestBytes, uint(2097152)},
		{"ClientTLS.ClientCertAuth", cfg.ClientTLSInfo.ClientCertAuth, true},
		{"ClientTLS.CertFile", cfg.ClientTLSInfo.CertFile, "/tls/etcd/server.crt"},
		{"ClientTLS.TrustedCAFile", cfg.ClientTLSInfo.TrustedCAFile, "/tls/etcd/server-ca.crt"},
		{"PeerTLS.ClientCertAuth", cfg.PeerTLSInfo.ClientCertAuth, true},
		{"PeerTLS.KeyFile", cfg.PeerTLSInfo.KeyFile, "/tls/etcd/peer.key"},
		{"ListenClientUrls", urls(cfg.ListenClientUrls), "https://127.0.0.1:2379 https://192.0.2.10:2379"},
		{"AdvertisePeerUrls", urls(cfg.AdvertisePeerUrls), "https://192.0.2.10:2380"},
		{"InitialCluster", cfg.InitialCluster, "node-1=https://192.0.2.10:2380"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func urls(us []url.URL) string {
	s := make([]string, len(us))
	for i := range us {
		s[i] = us[i].String()
	}
	return strings.Join(s, " ")
}

func TestKnownKeys(t *testing.T) {
	known := knownKeys()
	for _, k := range []string{"quota-backend-bytes", "snapshot-count", "auto-compaction-retention", "listen-client-urls",
		"client-transport-security", "listen-metrics-urls", "initial-cluster", "log-level", "feature-gates"} {
		if !known[k] {
			t.Errorf("%q not known", k)
		}
	}
	for _, k := range []string{"", "-", "bogus-key", "QuotaBackendBytes"} {
		if known[k] {
			t.Errorf("%q known", k)
		}
	}
}

func TestReadyBeforeStart(t *testing.T) {
	if err := New(Config{}).Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "not started") {
		t.Errorf("Ready before Start = %v, want not started", err)
	}
	if err := New(Config{}).Stop(context.Background()); err != nil {
		t.Errorf("Stop before Start = %v", err)
	}
}

func TestStartBadEtcdArgStartsNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	m := New(Config{Name: "n", DataDir: dir, AdvertiseIP: net.ParseIP("127.0.0.1"), ExtraArgs: []string{"bogus-key=1"}})
	if err := m.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "--etcd-arg") {
		t.Fatalf("Start = %v, want an --etcd-arg error", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("data dir created before validation: %v", err)
	}
}

// TestStartStopRestart runs a real embedded etcd member on the fixed ports,
// talks to it over mutual TLS, stops it and starts it again on the same dir.
func TestStartStopRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd")
	}
	for _, port := range []int{ClientPort, PeerPort, 2381} {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
		if err != nil {
			t.Skipf("port %d is taken: %v", port, err)
		}
		l.Close()
	}
	certs, err := pki.Generate(pki.Config{Dir: t.TempDir(), ServiceIP: net.ParseIP("10.43.0.1"), NodeName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Name:        "test",
		DataDir:     filepath.Join(t.TempDir(), "db"),
		AdvertiseIP: net.ParseIP("127.0.0.1"),
		TLS: TLS{
			ServerCA: certs.EtcdServerCA, ServerCert: certs.EtcdServerCert, ServerKey: certs.EtcdServerKey,
			PeerCA: certs.EtcdPeerCA, PeerCert: certs.EtcdPeerCert, PeerKey: certs.EtcdPeerKey,
		},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	tlsInfo := transport.TLSInfo{CertFile: certs.EtcdClientCert, KeyFile: certs.EtcdClientKey, TrustedCAFile: certs.EtcdServerCA}
	tlsConfig, err := tlsInfo.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}

	start := func() *Etcd {
		t.Helper()
		m := New(cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Stop(context.Background()) })
		if err := m.Ready(ctx); err != nil {
			t.Fatal(err)
		}
		return m
	}
	stop := func(m *Etcd) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		begin := time.Now()
		if err := m.Stop(ctx); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if took := time.Since(begin); took > 5*time.Second {
			t.Errorf("Stop took %s", took)
		}
		select {
		case err := <-m.Err():
			t.Errorf("Err() after a clean Stop: %v", err)
		default:
		}
	}
	client := func() *clientv3.Client {
		t.Helper()
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{cfg.ClientURL()},
			TLS:         tlsConfig,
			DialTimeout: 5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	m := start()
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "config.yaml")); err != nil {
		t.Errorf("rendered config: %v", err)
	}
	c := client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "/kedge/test", "value-1"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if resp, err := c.Get(ctx, "/kedge/test"); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "value-1" {
		t.Fatalf("Get = %v, %v", resp, err)
	}
	c.Close()

	// A client without a certificate is refused (client-cert-auth).
	anon, err := (transport.TLSInfo{TrustedCAFile: certs.EtcdServerCA}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if ac, err := clientv3.New(clientv3.Config{Endpoints: []string{cfg.ClientURL()}, TLS: anon, DialTimeout: 2 * time.Second}); err == nil {
		actx, acancel := context.WithTimeout(context.Background(), 2*time.Second)
		if _, err := ac.Get(actx, "/kedge/test"); err == nil {
			t.Error("Get without a client certificate succeeded")
		}
		acancel()
		ac.Close()
	}

	stop(m)
	if l, err := net.Listen("tcp", "127.0.0.1:2379"); err != nil {
		t.Errorf("client port still taken after Stop: %v", err)
	} else {
		l.Close()
	}

	m = start()
	c = client()
	defer c.Close()
	if resp, err := c.Get(ctx, "/kedge/test"); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "value-1" {
		t.Fatalf("Get after restart = %v, %v", resp, err)
	}

	// The membership as `kedge etcd member-list` shows it: one healthy
	// voter, probed over its advertised client URL; it cannot be removed.
	members, err := Members(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 1 || members[0].Name != "test" || members[0].Learner || !members[0].Healthy {
		t.Fatalf("Members = %+v", members)
	}
	if _, err := RemoveMember(ctx, c, "test"); !errors.Is(err, ErrOnlyMember) {
		t.Fatalf("RemoveMember(only member) = %v, want ErrOnlyMember", err)
	}
	if _, err := RemoveMember(ctx, c, "other"); err == nil || !strings.Contains(err.Error(), `no etcd member is named "other" (members: test)`) {
		t.Fatalf("RemoveMember(unknown) = %v", err)
	}
	stop(m)
}

// TestForceNewClusterSetting: --cluster-reset's option reaches etcd's
// config as its force-new-cluster, and only when asked for.
func TestForceNewClusterSetting(t *testing.T) {
	for _, force := range []bool{false, true} {
		dir := t.TempDir()
		m := New(Config{Name: "node-1", DataDir: dir, AdvertiseIP: net.ParseIP("192.0.2.10"), TLS: testTLS(), ForceNewCluster: force})
		s, err := m.settings()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := yaml.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := embed.ConfigFromFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.ForceNewCluster != force {
			t.Errorf("ForceNewCluster %v: etcd's config has %v", force, cfg.ForceNewCluster)
		}
	}
}
