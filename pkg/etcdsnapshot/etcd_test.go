package etcdsnapshot

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// freePort returns a loopback port nothing listens on (a moment ago).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testMember is a real etcd member on loopback ports (plain HTTP: the
// tests are about the data, pkg/etcd tests TLS).
type testMember struct {
	name, dir, peerURL string
	e                  *embed.Etcd
	client             *clientv3.Client
}

// startMember starts etcd with data dir dir (restored or new) and returns
// it with a client; the test's cleanup stops both.
func startMember(t *testing.T, name, dir, peerURL string) *testMember {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = name, dir
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	if peerURL == "" {
		peerURL = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	}
	peer, err := url.Parse(peerURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.InitialCluster = name + "=" + peerURL
	cfg.ListenMetricsUrls = nil
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		t.Fatal("etcd not ready after 30s")
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{client.String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	m := &testMember{name: name, dir: dir, peerURL: peerURL, e: e, client: c}
	t.Cleanup(m.stop)
	return m
}

func (m *testMember) stop() {
	if m.client != nil {
		_ = m.client.Close()
		m.client = nil
	}
	if m.e != nil {
		m.e.Close()
		m.e = nil
	}
}

// put writes n keys /test/<i> = v<i>.
func (m *testMember) put(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range n {
		if _, err := m.client.Put(ctx, fmt.Sprintf("/test/%03d", i), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
}

// count is the number of keys under /test/.
func (m *testMember) count(t *testing.T) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := m.client.Get(ctx, "/test/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// newMember starts a member with a fresh data dir under t.TempDir().
func newMember(t *testing.T, name string) *testMember {
	return startMember(t, name, filepath.Join(t.TempDir(), "etcd"), "")
}
