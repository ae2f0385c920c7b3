package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kedge-io/kedge/pkg/etcd"
	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/servicelb"
	"github.com/kedge-io/kedge/pkg/supervisor"
	"github.com/kedge-io/kedge/pkg/version"
)

// poolsString is --service-lb-pool as one comparable string.
func poolsString(pools []servicelb.Pool) string {
	var s []string
	for _, p := range pools {
		s = append(s, p.String())
	}
	return strings.Join(slices.Sorted(slices.Values(s)), ",")
}

// settings are the flags this server must share with the rest of the cluster.
func settings(cfg Config) supervisor.Settings {
	return supervisor.Settings{
		ClusterCIDR:    cfg.ClusterCIDR.String(),
		ServiceCIDR:    cfg.ServiceCIDR.String(),
		ClusterDNS:     cfg.ClusterDNS.String(),
		ClusterDomain:  cfg.ClusterDomain,
		FlannelBackend: string(cfg.FlannelBackend),
		Disable:        strings.Join(slices.Sorted(slices.Values(cfg.Disable)), ","),
		ServiceLBPools: poolsString(cfg.ServiceLBPools),
	}
}

// joinCluster makes this server a member of the cluster of cfg.JoinURL on
// its first start: it fetches the cluster CA (pinned by the token), asks the
// supervisor to add it to etcd as a learner, and writes the cluster's CAs
// where pki.Generate finds them. It returns etcd's initial-cluster, or ""
// when there is nothing to join (no --server, or the server has its CAs,
// so it joined before — unless its etcd member was removed since: then it
// joins again).
func joinCluster(ctx context.Context, cfg Config, log *slog.Logger) (string, error) {
	removed, err := checkRemoved(cfg)
	if err != nil || cfg.JoinURL == "" {
		return "", err
	}
	want := pki.Layout(cfg.tlsDir())
	if _, err := os.Stat(want.ServerCA); removed {
		log.Info("this server was removed from the cluster's etcd; joining again", "component", "server", "server", cfg.JoinURL)
	} else if err == nil {
		// Joined before: etcd has its data dir and ignores the member list,
		// or it stopped before etcd first started and needs it.
		raw, err := os.ReadFile(cfg.initialClusterFile())
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return strings.TrimSpace(string(raw)), err
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	tok, err := join.Parse(cfg.Token)
	if err != nil {
		return "", err
	}
	ip := cfg.AdvertiseIP.String()
	req := supervisor.ServerRequest{
		Name:      cfg.NodeName,
		PeerURL:   "https://" + net.JoinHostPort(ip, strconv.Itoa(etcd.PeerPort)),
		ClientURL: "https://" + net.JoinHostPort(ip, strconv.Itoa(etcd.ClientPort)),
		Settings:  settings(cfg),
		Version:   version.Kubernetes(),
	}
	var answer supervisor.ServerResponse
	// The server joined may be down or still starting, or busy promoting
	// another learner: wait for it; only a definite refusal ends the join.
	what := fmt.Sprintf("the server at %s to add %s to etcd", cfg.JoinURL, cfg.NodeName)
	err = join.Retry(ctx, join.DefaultRetry, log.With("component", "server"), what, func(ctx context.Context) error {
		if err := join.Post(ctx, cfg.JoinURL, tok, join.UserServer, supervisor.ServerPath, req, &answer, log); err != nil {
			return fmt.Errorf("join %s as server %s: %w", cfg.JoinURL, cfg.NodeName, err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if answer.InitialCluster == "" {
		return "", fmt.Errorf("join %s: the server sent no etcd member list", cfg.JoinURL)
	}
	if err := os.MkdirAll(cfg.serverDir(), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(cfg.initialClusterFile(), []byte(answer.InitialCluster+"\n"), 0o600); err != nil {
		return "", err
	}
	if answer.AgentSecret != "" {
		// Every server accepts the cluster's agent token.
		if _, err := join.EnsureTokenFile(cfg.AgentTokenFile(), answer.Files["server-ca.crt"], answer.AgentSecret); err != nil {
			return "", fmt.Errorf("join %s: the agent token: %w", cfg.JoinURL, err)
		}
	}
	if len(answer.EncryptionConfig) > 0 {
		// The cluster encrypts Secrets: this apiserver needs the same keys.
		if err := os.MkdirAll(cfg.credDir(), 0o700); err != nil {
			return "", err
		}
		if err := pki.WriteFileAtomic(cfg.EncryptionConfigFile(), answer.EncryptionConfig, 0o600); err != nil {
			return "", fmt.Errorf("join %s: the encryption config: %w", cfg.JoinURL, err)
		}
	}
	if err := writeCAFiles(want, answer.Files); err != nil {
		return "", fmt.Errorf("join %s: %w", cfg.JoinURL, err)
	}
	if err := os.Remove(cfg.removedFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	log.Info("joined as etcd learner", "component", "server", "server", cfg.JoinURL, "initial_cluster", answer.InitialCluster)
	return answer.InitialCluster, nil
}

// writeCAFiles stores the cluster's CAs (keys 0600) under the paths of
// layout; the server CA is written last, since its presence marks a
// completed join.
func writeCAFiles(layout pki.Bundle, files map[string][]byte) error {
	allowed := map[string]bool{}
	for _, p := range []string{
		layout.ServerCA, layout.ServerCAKey, layout.ClientCA, layout.ClientCAKey, layout.RequestHeaderCA, layout.RequestHeaderCAKey,
		layout.EtcdServerCA, layout.EtcdServerCAKey, layout.EtcdPeerCA, layout.EtcdPeerCAKey, layout.ServiceAccountKey, layout.ServiceAccountPub,
	} {
		rel, err := filepath.Rel(layout.Dir, p)
		if err != nil {
			return err
		}
		allowed[filepath.ToSlash(rel)] = true
	}
	for name := range allowed {
		if _, ok := files[name]; !ok {
			return fmt.Errorf("the server did not send %s", name)
		}
	}
	for _, p := range layout.CrossFiles() { // sent during and after a CA rotation
		if rel, err := filepath.Rel(layout.Dir, p); err == nil {
			allowed[filepath.ToSlash(rel)] = true
		}
	}
	serverCA := "server-ca.crt"
	if rel, err := filepath.Rel(layout.Dir, layout.ServerCA); err == nil {
		serverCA = filepath.ToSlash(rel)
	}
	write := func(name string) error {
		if !allowed[name] {
			return fmt.Errorf("the server sent an unexpected file %q", name)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			mode = 0o600
		}
		return pki.WriteFileAtomic(filepath.Join(layout.Dir, filepath.FromSlash(path.Clean(name))), files[name], mode)
	}
	for name := range files {
		if name == serverCA {
			continue
		}
		if err := write(name); err != nil {
			return err
		}
	}
	return write(serverCA)
}

// localEtcd returns a factory of the client of the local etcd member,
// created on first use (etcd is not up when the components are built) and
// shared for the life of the process.
func localEtcd(t etcd.ClientTLS) func() (*clientv3.Client, error) {
	var (
		mu sync.Mutex
		c  *clientv3.Client
	)
	return func() (*clientv3.Client, error) {
		mu.Lock()
		defer mu.Unlock()
		if c != nil {
			return c, nil
		}
		client, err := etcd.NewClient("https://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(etcd.ClientPort)), t)
		if err != nil {
			return nil, err
		}
		c = client
		return c, nil
	}
}
