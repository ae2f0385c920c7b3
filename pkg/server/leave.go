package server

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kedge-io/kedge/pkg/etcd"
)

// removedFile records that this server's etcd member was removed from the
// cluster: its next start joins again (--server) or is refused.
func (c Config) removedFile() string { return filepath.Join(c.serverDir(), "removed") }

// ownNode is the Node this server registers, "" when it runs no node
// components.
func ownNode(cfg Config) string {
	if cfg.DisableAgent {
		return ""
	}
	return cfg.NodeName
}

// leaveCluster is what a server does once its etcd member has been removed
// (by `kedge etcd member-remove`, or because its Node was deleted) and its
// components have stopped: etcd's data can never serve again, so it is moved
// aside (kept, not deleted), and the removal is recorded for the next start.
func leaveCluster(cfg Config, log *slog.Logger) error {
	aside := cfg.dbDir() + ".removed-" + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(cfg.dbDir(), aside); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w; moving its etcd data aside failed: %v", etcd.ErrRemoved, err)
	}
	if err := os.Remove(cfg.initialClusterFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %v", etcd.ErrRemoved, err)
	}
	note := fmt.Sprintf("removed from the cluster's etcd membership at %s; etcd data moved to %s\n", time.Now().UTC().Format(time.RFC3339), aside)
	if err := os.WriteFile(cfg.removedFile(), []byte(note), 0o600); err != nil {
		return fmt.Errorf("%w: %v", etcd.ErrRemoved, err)
	}
	log.Error("this server's etcd member was removed from the cluster; it stops", "etcd_data", aside)
	return fmt.Errorf("%w (by `kedge etcd member-remove` or the deletion of its Node); its etcd data is kept in %s. "+
		"To join the cluster again, start it with --server https://<another server>:6443 --token <the cluster's token>", etcd.ErrRemoved, aside)
}

// checkRemoved refuses to start a removed server on its own: without
// --server it would start a second cluster with the first one's CAs. With
// --server it joins again (joinCluster).
func checkRemoved(cfg Config) (bool, error) {
	raw, err := os.ReadFile(cfg.removedFile())
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if cfg.JoinURL == "" {
		return true, fmt.Errorf("this server was %s (%s): start it with --server https://<a server of the cluster>:6443 --token <token> to join again, or delete %s to start a new cluster",
			strings.TrimSpace(string(raw)), cfg.removedFile(), cfg.serverDir())
	}
	return true, nil
}
