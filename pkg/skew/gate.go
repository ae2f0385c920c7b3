package skew

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kedge-io/kedge/pkg/component"
)

// Where the servers' versions are kept in etcd (so that a restored snapshot
// carries the record of its own time).
const (
	// ServersPrefix + node name is the Kubernetes version a server last
	// started with.
	ServersPrefix = "/kedge/versions/servers/"
	// DatastoreKey is the newest Kubernetes version that ran on the data.
	DatastoreKey = "/kedge/versions/datastore"
)

// RecordFile is the file, in a server's db dir, that holds the Kubernetes
// version that last ran on that data dir (read before etcd starts).
const RecordFile = "kedge-version"

// Versions reads the recorded versions of the servers that are etcd
// members now (node name → version: a removed server's record does not
// count) and the datastore's.
func Versions(ctx context.Context, c *clientv3.Client) (servers map[string]string, datastore string, err error) {
	servers, datastore, _, err = versions(ctx, c)
	return servers, datastore, err
}

// versions is Versions with the datastore record's mod revision (0: none),
// for a compare-and-swap on it.
func versions(ctx context.Context, c *clientv3.Client) (servers map[string]string, datastore string, rev int64, err error) {
	members, err := c.MemberList(ctx)
	if err != nil {
		return nil, "", 0, err
	}
	isMember := map[string]bool{}
	for _, m := range members.Members {
		isMember[m.Name] = true
	}
	resp, err := c.Get(ctx, "/kedge/versions/", clientv3.WithPrefix())
	if err != nil {
		return nil, "", 0, err
	}
	servers = map[string]string{}
	for _, kv := range resp.Kvs {
		switch k := string(kv.Key); {
		case k == DatastoreKey:
			datastore, rev = string(kv.Value), kv.ModRevision
		case strings.HasPrefix(k, ServersPrefix) && isMember[strings.TrimPrefix(k, ServersPrefix)]:
			servers[strings.TrimPrefix(k, ServersPrefix)] = string(kv.Value)
		}
	}
	return servers, datastore, rev, nil
}

// ReadRecord is the version that last ran on the db dir ("" if none).
func ReadRecord(dbDir string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(dbDir, RecordFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return strings.TrimSpace(string(raw)), err
}

// GateConfig configures a server's Gate.
type GateConfig struct {
	Name    string // the server's node name (its etcd member name)
	Version string // the Kubernetes version it runs
	DBDir   string // <data-dir>/server/db, where RecordFile is written
	Etcd    func() (*clientv3.Client, error)
	Log     *slog.Logger
}

// Gate is the server component that checks the server against the other
// servers' versions and the datastore's, once etcd answers, and then
// records its own: it fails (and so stops the server) with the versions of
// both sides named when the skew policy forbids the combination. It runs
// beside the apiserver's start, so a refused server stops within moments of
// etcd being reachable.
type Gate struct {
	component.Background
	cfg   GateConfig
	ready chan struct{}
}

// NewGate returns the Gate of a server.
func NewGate(cfg GateConfig) *Gate { return &Gate{cfg: cfg, ready: make(chan struct{})} }

// Name implements component.Component.
func (g *Gate) Name() string { return "version-skew" }

// Start implements component.Component.
func (g *Gate) Start(ctx context.Context) error {
	g.Context(ctx)
	g.Go(func(ctx context.Context) error {
		if err := g.check(ctx); err != nil {
			return err
		}
		close(g.ready)
		<-ctx.Done()
		return nil
	})
	return nil
}

// Ready implements component.Component: the server's version is checked and
// recorded.
func (g *Gate) Ready(ctx context.Context) error {
	select {
	case <-g.ready:
		return nil
	case err := <-g.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// check retries etcd until it answers, then compares and records.
func (g *Gate) check(ctx context.Context) error {
	for {
		err := g.checkOnce(ctx)
		var refused *refusal
		switch {
		case err == nil:
			return nil
		case errors.As(err, &refused):
			return refused.err
		case ctx.Err() != nil:
			return ctx.Err()
		}
		g.cfg.Log.Debug("version check: etcd not ready", "component", g.Name(), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// refusal is a definite answer of the policy, not worth a retry.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }

func (g *Gate) checkOnce(ctx context.Context) error {
	c, err := g.cfg.Etcd()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	servers, datastore, rev, err := versions(ctx, c)
	if err != nil {
		return err
	}
	if err := CheckServer(g.cfg.Name, g.cfg.Version, servers, datastore); err != nil {
		return &refusal{err}
	}
	// Compare-and-swap on the datastore's record: two servers upgraded at
	// once both end up recorded, the newer minor in the datastore key.
	cmp := clientv3.Compare(clientv3.CreateRevision(DatastoreKey), "=", 0)
	if rev != 0 {
		cmp = clientv3.Compare(clientv3.ModRevision(DatastoreKey), "=", rev)
	}
	txn, err := c.Txn(ctx).If(cmp).Then(
		clientv3.OpPut(ServersPrefix+g.cfg.Name, g.cfg.Version),
		clientv3.OpPut(DatastoreKey, Newer(g.cfg.Version, datastore)),
	).Commit()
	if err != nil {
		return err
	}
	if !txn.Succeeded {
		return fmt.Errorf("%s changed meanwhile", DatastoreKey)
	}
	if err := writeRecord(g.cfg.DBDir, g.cfg.Version); err != nil {
		return &refusal{fmt.Errorf("record the version: %w", err)}
	}
	g.cfg.Log.Debug("version recorded", "component", g.Name(), "version", g.cfg.Version, "servers", servers, "datastore", datastore)
	return nil
}

// writeRecord stores the version that runs on the db dir (atomically).
func writeRecord(dbDir, v string) error {
	tmp := filepath.Join(dbDir, "."+RecordFile+".tmp")
	if err := os.WriteFile(tmp, []byte(v+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dbDir, RecordFile))
}
