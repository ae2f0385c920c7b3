package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/kedge-io/kedge/pkg/etcd"
	"github.com/kedge-io/kedge/pkg/etcdsnapshot"
)

// resetTimeout bounds the start of etcd with --cluster-reset.
const resetTimeout = 5 * time.Minute

// resetCluster is `kedge server --cluster-reset`: etcd starts once with
// force-new-cluster, which keeps all data and makes this member the only
// one, and stops. It returns once done. Run checked the data
// (checkEtcdData) before.
func resetCluster(ctx context.Context, cfg Config, etcdCfg etcd.Config, log *slog.Logger) error {
	if _, err := os.Stat(cfg.etcdDir()); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("--cluster-reset: no etcd data in %s to reset (to restore a snapshot use --cluster-reset-restore-path FILE)", cfg.etcdDir())
	}
	etcdCfg.ForceNewCluster = true
	etcdCfg.InitialCluster, etcdCfg.ClusterState = "", ""
	e := etcd.New(etcdCfg)
	ctx, cancel := context.WithTimeout(ctx, resetTimeout)
	defer cancel()
	begin := time.Now()
	if err := e.Start(ctx); err != nil {
		return fmt.Errorf("--cluster-reset: %w", err)
	}
	err := e.Ready(ctx)
	if stopErr := e.Stop(context.Background()); err == nil {
		err = stopErr
	}
	if err != nil {
		return fmt.Errorf("--cluster-reset: %w", err)
	}
	for _, f := range []string{cfg.initialClusterFile(), cfg.removedFile()} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	log.Info("etcd membership reset: this member is the only one, all data kept", "etcd_data", cfg.etcdDir(), "took", time.Since(begin).Round(time.Millisecond))
	log.Warn(resetInstructions(cfg, "reset"))
	return nil
}

// restoreCommand is the command that restores snapshot on this server.
func restoreCommand(cfg Config, snapshot string) string {
	args := []string{"kedge server"}
	if cfg.DataDir != DefaultDataDir {
		args = append(args, "--data-dir "+cfg.DataDir)
	}
	args = append(args, "--node-name "+cfg.NodeName, "--advertise-address "+cfg.AdvertiseIP.String(), "--cluster-reset-restore-path "+snapshot)
	return strings.Join(args, " ")
}

// checkEtcdData refuses to start on damaged etcd data, with the command
// that restores the newest local snapshot, or restores it itself with
// --etcd-auto-restore (a server that joined others rejoins them instead).
func checkEtcdData(cfg Config, log *slog.Logger) error {
	damage := checkData(cfg, log)
	if damage == nil {
		return nil
	} else if !errors.Is(damage, etcd.ErrCorrupt) {
		return damage
	}
	rejoin := fmt.Sprintf("if other servers of this cluster are healthy, move %s aside and start this server with --server https://<a healthy server>:6443 --token <token> to join again", cfg.serverDir())
	newest, ok, err := etcdsnapshot.Newest(cfg.EtcdSnapshots.Dir, cfg.NodeName)
	if err != nil {
		return fmt.Errorf("%w; %s; listing the snapshots failed: %v", damage, rejoin, err)
	}
	if !ok {
		return fmt.Errorf("%w; there is no snapshot in %s: %s; otherwise restore a snapshot taken elsewhere: %s",
			damage, cfg.EtcdSnapshots.Dir, rejoin, restoreCommand(cfg, "<snapshot file>"))
	}
	if !cfg.EtcdAutoRestore {
		return fmt.Errorf("%w. To restore the newest local snapshot (%s, taken %s) run: %s — then start kedge as usual; --etcd-auto-restore does this unattended. On a server of a multi-server cluster rejoining is better: %s",
			damage, newest.Name, newest.Created.UTC().Format(time.RFC3339), restoreCommand(cfg, newest.Path), rejoin)
	}
	if cfg.JoinURL != "" {
		return fmt.Errorf("%w; --etcd-auto-restore does not restore a server that joined others (--server %s): a restored snapshot would start a second cluster. %s",
			damage, cfg.JoinURL, rejoin)
	}
	log.Warn("etcd's data is damaged; restoring the newest local snapshot (--etcd-auto-restore)", "damage", damage.Error(), "snapshot", newest.Path)
	p, err := etcdsnapshot.Prepare(etcdsnapshot.RestoreOptions{Snapshot: newest.Path, EtcdDir: cfg.etcdDir(), Name: cfg.NodeName, PeerURL: cfg.peerURL()})
	if err != nil {
		return fmt.Errorf("%w; --etcd-auto-restore: %v; the damaged data is untouched", damage, err)
	}
	defer p.Discard()
	aside, err := p.Commit()
	if err != nil {
		return fmt.Errorf("--etcd-auto-restore: %w", err)
	}
	log.Warn("etcd restored from the newest local snapshot; the damaged data is kept aside", "snapshot", newest.Path, "revision", p.Revision, "damaged_data", aside)
	return nil
}

// checkTimeout bounds the check of etcd's data at start.
const checkTimeout = 5 * time.Minute

// checkData checks etcd's data in a child process (etcd.CheckDataInChild),
// this binary run as `kedge etcd check-data DIR`.
func checkData(cfg Config, log *slog.Logger) error {
	if _, err := os.Stat(cfg.etcdDir()); errors.Is(err, os.ErrNotExist) {
		return nil // a new member: nothing to check, no process to start
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	begin := time.Now()
	err = etcd.CheckDataInChild(ctx, append([]string{exe}, etcd.CheckDataArgs...), cfg.etcdDir())
	if err == nil {
		log.Info("etcd's data checked (bbolt, WAL)", "took", time.Since(begin).Round(time.Millisecond))
	}
	return err
}
