package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kedge-io/kedge/pkg/etcd"
	"github.com/kedge-io/kedge/pkg/etcdsnapshot"
	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/skew"
)

// DefaultDataDir is --data-dir's default.
const DefaultDataDir = "/var/lib/kedge"

// EtcdSnapshots are the --etcd-snapshot-* settings.
type EtcdSnapshots struct {
	Disable   bool                  // --etcd-disable-snapshots
	Schedule  etcdsnapshot.Schedule // --etcd-snapshot-schedule-cron, parsed
	Cron      string                // its text
	Retention int                   // --etcd-snapshot-retention
	Dir       string                // --etcd-snapshot-dir, absolute
	Compress  bool                  // --etcd-snapshot-compress (zstd)
}

// DefaultSnapshotDir is --etcd-snapshot-dir's default for a data dir.
func DefaultSnapshotDir(dataDir string) string {
	return filepath.Join(dataDir, "server", "db", "snapshots")
}

// etcdDir is etcd's own data-dir (etcd.Config.DataDir + "/etcd").
func (c Config) etcdDir() string { return filepath.Join(c.dbDir(), "etcd") }

// lockFile is held (flock) by the kedge server that uses the data dir.
func (c Config) lockFile() string { return filepath.Join(c.serverDir(), "kedge.lock") }

// peerURL is this member's etcd peer URL.
func (c Config) peerURL() string {
	return "https://" + net.JoinHostPort(c.AdvertiseIP.String(), strconv.Itoa(etcd.PeerPort))
}

// lockDataDir takes the data dir's lock for the life of the process (or
// until unlock): one kedge server, or one restore, per data dir.
func lockDataDir(c Config) (unlock func(), err error) {
	if err := os.MkdirAll(c.serverDir(), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(c.lockFile(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(c.lockFile())
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another kedge server (pid %s) runs on --data-dir %s (it holds %s): stop it first (systemctl stop kedge); nothing was changed",
				strings.TrimSpace(string(pid)), c.DataDir, c.lockFile())
		}
		return nil, fmt.Errorf("lock %s: %w", c.lockFile(), err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { _ = f.Close() }, nil
}

// SealedCAs reads a server's CAs and tokens from its data dir and seals
// them with the join token's secret, for etcdsnapshot.BootstrapKey.
func SealedCAs(dataDir string) ([]byte, error) {
	c := Config{DataDir: dataDir}
	tok, err := readToken(c.TokenFile())
	if err != nil {
		return nil, err
	}
	b := etcdsnapshot.Bootstrap{Files: map[string][]byte{}}
	if agent, err := readToken(c.AgentTokenFile()); err == nil {
		b.AgentSecret = agent.Secret
	}
	if enc, err := os.ReadFile(c.EncryptionConfigFile()); err == nil {
		b.EncryptionConfig = enc
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	layout := pki.Layout(c.tlsDir())
	for _, p := range layout.CAFiles() {
		rel, err := filepath.Rel(layout.Dir, p)
		if err != nil {
			return nil, err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		b.Files[filepath.ToSlash(rel)] = data
	}
	return etcdsnapshot.Seal(b, tok.Secret)
}

func readToken(path string) (join.Token, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return join.Token{}, err
	}
	return join.Parse(strings.TrimSpace(string(raw)))
}

// restoreSnapshot is `kedge server --cluster-reset-restore-path FILE`: the
// snapshot, verified by etcd's hash check, becomes this server's etcd data
// as a new single-member cluster; the old data is moved aside. On a machine
// without the cluster's CAs (a new one), the CAs stored in the snapshot are
// opened with --token. It returns once done: the server is then started as
// usual.
func restoreSnapshot(cfg Config, log *slog.Logger) error {
	unlock, err := lockDataDir(cfg)
	if err != nil {
		return err
	}
	defer unlock()
	const flag = "--cluster-reset-restore-path"
	p, err := etcdsnapshot.Prepare(etcdsnapshot.RestoreOptions{
		Snapshot: cfg.ClusterResetRestorePath, EtcdDir: cfg.etcdDir(), Name: cfg.NodeName, PeerURL: cfg.peerURL(),
	})
	if err != nil {
		return fmt.Errorf("%s %w; the existing data is untouched", flag, err)
	}
	defer p.Discard() // after Commit, nothing is left to discard
	layout := pki.Layout(cfg.tlsDir())
	newMachine := false
	if _, err := os.Stat(layout.ServerCA); errors.Is(err, os.ErrNotExist) {
		newMachine = true
		if err := unsealCAs(cfg, layout, p.Bootstrap); err != nil {
			return fmt.Errorf("%s %s: %w; the existing data is untouched", flag, cfg.ClusterResetRestorePath, err)
		}
	} else if err != nil {
		return err
	}
	aside, err := p.Commit()
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	// The snapshot carries the version record of its time (skew.Gate).
	for _, f := range []string{cfg.initialClusterFile(), cfg.removedFile(), filepath.Join(cfg.dbDir(), skew.RecordFile)} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	log.Info("etcd restored from the snapshot as a new single-member cluster", "snapshot", cfg.ClusterResetRestorePath,
		"revision", p.Revision, "etcd_data", cfg.etcdDir(), "old_data", aside, "cas_from_snapshot", newMachine)
	log.Warn(resetInstructions(cfg, "restored from "+cfg.ClusterResetRestorePath))
	return nil
}

// unsealCAs writes the cluster's CAs and tokens, from the snapshot's
// sealed copy opened with --token, on a machine that has none.
func unsealCAs(cfg Config, layout pki.Bundle, sealed []byte) error {
	if cfg.Token == "" {
		return fmt.Errorf("this machine has no CAs of the cluster (%s): a snapshot restored on a new machine needs --token, the cluster's token (the old server's <data-dir>/server/token), to open the CAs it carries", layout.ServerCA)
	}
	if sealed == nil {
		return fmt.Errorf("the snapshot carries no CAs (%s is not in it) and this machine has none (%s): copy the old server's <data-dir>/server/tls here first", etcdsnapshot.BootstrapKey, layout.ServerCA)
	}
	tok, err := join.Parse(cfg.Token)
	if err != nil {
		return err
	}
	b, err := etcdsnapshot.Open(sealed, tok.Secret)
	if err != nil {
		return fmt.Errorf("--token: %w", err)
	}
	if err := writeCAFiles(layout, b.Files); err != nil {
		return fmt.Errorf("the CAs in the snapshot: %w", err)
	}
	caPEM, err := pki.PinnedCA(layout.ServerCA)
	if err != nil {
		return err
	}
	if _, err := join.EnsureTokenFile(cfg.TokenFile(), caPEM, tok.Secret); err != nil {
		return err
	}
	if b.AgentSecret != "" {
		if _, err := join.EnsureTokenFile(cfg.AgentTokenFile(), caPEM, b.AgentSecret); err != nil {
			return fmt.Errorf("--agent-token: %w", err)
		}
	}
	if b.EncryptionConfig != nil {
		if err := os.MkdirAll(filepath.Dir(cfg.EncryptionConfigFile()), 0o700); err != nil {
			return err
		}
		if err := pki.WriteFileAtomic(cfg.EncryptionConfigFile(), b.EncryptionConfig, 0o600); err != nil {
			return fmt.Errorf("the encryption config in the snapshot: %w", err)
		}
	}
	return nil
}

// resetInstructions tells the user what to do after a reset or restore.
func resetInstructions(cfg Config, what string) string {
	self := "https://" + net.JoinHostPort(cfg.AdvertiseIP.String(), strconv.Itoa(cfg.HTTPSPort))
	return fmt.Sprintf("etcd %s: this server is now the only member of a new etcd cluster. "+
		"Start it again without --cluster-reset / --cluster-reset-restore-path. "+
		"On each other server: stop kedge, move its <data-dir>/server aside (its old etcd member cannot come back; keep it for its snapshots), "+
		"and start it with --server %s --token <the cluster's token, %s>", what, self, cfg.TokenFile())
}

// snapshotSchedule configures the scheduled snapshots of this server.
func snapshotSchedule(cfg Config, client func() (*clientv3.Client, error), log *slog.Logger) etcdsnapshot.SchedulerConfig {
	s := cfg.EtcdSnapshots
	return etcdsnapshot.SchedulerConfig{
		Schedule: s.Schedule, Spec: s.Cron, Retention: s.Retention, Dir: s.Dir, Node: cfg.NodeName, Compress: s.Compress,
		Etcd:      client,
		Bootstrap: func() ([]byte, error) { return SealedCAs(cfg.DataDir) },
		Log:       log,
	}
}
