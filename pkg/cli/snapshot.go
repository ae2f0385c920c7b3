package cli

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/kedge-io/kedge/pkg/etcdsnapshot"
	"github.com/kedge-io/kedge/pkg/server"
)

// snapshotFlags are `kedge server`'s etcd snapshot and restore flags.
type snapshotFlags struct {
	cron        string
	retention   int
	dir         string
	compress    bool
	disable     bool
	reset       bool
	restorePath string
	autoRestore bool
}

func (f *snapshotFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.cron, "etcd-snapshot-schedule-cron", etcdsnapshot.DefaultCron, "when to take etcd snapshots: a cron expression (minute hour day-of-month month day-of-week)")
	fs.IntVar(&f.retention, "etcd-snapshot-retention", etcdsnapshot.DefaultRetention, "scheduled etcd snapshots of this server to keep")
	fs.StringVar(&f.dir, "etcd-snapshot-dir", "", "directory of the etcd snapshots (default <data-dir>/server/db/snapshots)")
	fs.BoolVar(&f.compress, "etcd-snapshot-compress", false, "compress etcd snapshots with zstd (name ends in .zst)")
	fs.BoolVar(&f.disable, "etcd-disable-snapshots", false, "take no scheduled etcd snapshots")
	fs.BoolVar(&f.reset, "cluster-reset", false, "make this server's etcd member a new single-member cluster, all data kept (a cluster that lost quorum), then exit")
	fs.StringVar(&f.restorePath, "cluster-reset-restore-path", "", "restore this etcd snapshot as a new single-member cluster (the old etcd data is kept aside), then exit; on a new machine also give --token")
	fs.BoolVar(&f.autoRestore, "etcd-auto-restore", false, "when etcd's data is damaged at start, restore the newest local snapshot (the damaged data is kept aside) instead of refusing to start")
}

// apply validates the flags into c (whose DataDir is set). With --server
// too, a reset or restore ignores it: the server becomes a new cluster.
func (f *snapshotFlags) apply(c *server.Config) error {
	s := server.EtcdSnapshots{Disable: f.disable, Cron: f.cron, Retention: f.retention, Compress: f.compress}
	var err error
	if s.Schedule, err = etcdsnapshot.ParseCron(f.cron); err != nil {
		return err
	}
	if f.retention < 1 {
		return fmt.Errorf("--etcd-snapshot-retention %d: keep at least 1 (or turn snapshots off with --etcd-disable-snapshots)", f.retention)
	}
	s.Dir = server.DefaultSnapshotDir(c.DataDir)
	if f.dir != "" {
		if s.Dir, err = filepath.Abs(f.dir); err != nil {
			return fmt.Errorf("--etcd-snapshot-dir %q: %w", f.dir, err)
		}
	}
	c.EtcdSnapshots = s
	c.ClusterReset, c.EtcdAutoRestore = f.reset, f.autoRestore
	if f.restorePath != "" {
		if c.ClusterResetRestorePath, err = filepath.Abs(f.restorePath); err != nil {
			return fmt.Errorf("--cluster-reset-restore-path %q: %w", f.restorePath, err)
		}
	}
	return nil
}
