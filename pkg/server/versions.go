package server

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kedge-io/kedge/pkg/skew"
	"github.com/kedge-io/kedge/pkg/version"
)

// checkVersionRecord refuses, before etcd starts, a binary whose Kubernetes
// minor is older than the one that last ran on the data dir, or more than
// one minor newer (see package skew). A restored snapshot has no record:
// the record in its data decides (skew.Gate).
func checkVersionRecord(cfg Config) error {
	prev, err := skew.ReadRecord(cfg.dbDir())
	if err != nil {
		return err
	}
	return skew.CheckDataDir(cfg.dbDir(), prev, version.Kubernetes())
}

// etcdVersions reads the servers' and the datastore's recorded versions
// for the supervisor's checks of joining nodes.
func etcdVersions(etcdClient func() (*clientv3.Client, error)) func(context.Context) (map[string]string, string, error) {
	return func(ctx context.Context) (map[string]string, string, error) {
		c, err := etcdClient()
		if err != nil {
			return nil, "", err
		}
		return skew.Versions(ctx, c)
	}
}
