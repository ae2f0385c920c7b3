package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kedge-io/kedge/pkg/flannel"
	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/supervisor"
	"github.com/kedge-io/kedge/pkg/version"
)

// Join fetches the cluster's CA from serverURL (checked against the token's
// hash before the secret is sent), then the node's certificates and the
// cluster's settings from the supervisor, and completes node: certificates
// under <data-dir>/agent/tls, the apiservers (serverURL's first), cluster
// CIDR, DNS and pod network backend. It waits, retrying with backoff, while
// the server cannot be reached or answers that it is not ready; a definite
// refusal (join.Permanent: wrong secret, CA hash mismatch, node name taken)
// or the end of ctx ends it.
func Join(ctx context.Context, node *Config, serverURL, token string, log *slog.Logger) error {
	tok, err := join.Parse(token)
	if err != nil {
		return err
	}
	password, err := nodePassword(filepath.Join(node.Dir(), "node-password"))
	if err != nil {
		return err
	}
	// A node that joined before authenticates with its kubelet client
	// certificate as well: it keeps joining after the token is rotated.
	var cert *tls.Certificate
	prev := pki.NodeLayout(filepath.Join(node.Dir(), "tls"))
	if c, err := tls.LoadX509KeyPair(prev.KubeletClientCert, prev.KubeletClientKey); err == nil {
		cert = &c
	}
	trusted, _ := os.ReadFile(prev.ServerCA) // joined before: the CA it trusts (a rotated CA re-verifies with it)
	var answer supervisor.NodeResponse
	req := supervisor.NodeRequest{Name: node.NodeName, Password: password, IPs: []string{node.NodeIP.String()}, Version: version.Kubernetes()}
	// A server that is down or still starting (an edge site powering up)
	// is waited for; only a definite refusal ends the join.
	what := fmt.Sprintf("the server at %s to accept node %s", serverURL, node.NodeName)
	err = join.Retry(ctx, join.DefaultRetry, log.With("component", "agent"), what, func(ctx context.Context) error {
		if err := join.PostTrusted(ctx, serverURL, tok, trusted, join.UserNode, cert, supervisor.NodePath, req, &answer, log); err != nil {
			return fmt.Errorf("join %s as node %s: %w", serverURL, node.NodeName, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	certs, err := writeNodeFiles(filepath.Join(node.Dir(), "tls"), answer.Files)
	if err != nil {
		return err
	}
	node.Certs = certs
	node.ClusterCIDR = answer.ClusterCIDR
	node.ServiceCIDR = answer.ServiceCIDR
	node.ClusterDomain = answer.ClusterDomain
	if node.ClusterDNS = net.ParseIP(answer.ClusterDNS); node.ClusterDNS == nil {
		return fmt.Errorf("join %s: the server sent no cluster DNS address", serverURL)
	}
	if node.FlannelBackend, err = flannel.ParseBackend(answer.FlannelBackend); err != nil {
		return fmt.Errorf("join %s: %w", serverURL, err)
	}
	node.Disabled = answer.Disabled
	node.Servers = []string{strings.TrimPrefix(serverURL, "https://")}
	for _, s := range answer.Servers {
		if hostPort := strings.TrimPrefix(s, "https://"); hostPort != node.Servers[0] {
			node.Servers = append(node.Servers, hostPort)
		}
	}
	if err := saveJoined(*node, serverURL); err != nil {
		return err
	}
	log.Info("joined", "component", "agent", "server", serverURL, "node", node.NodeName, "servers", node.Servers)
	return nil
}

// nodePassword reads the node's own secret, creating it (0600) on first use.
// The server binds the node name to it: another machine with this name is refused.
func nodePassword(path string) (string, error) {
	if raw, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(raw)), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	pw := hex.EncodeToString(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	return pw, os.WriteFile(path, []byte(pw+"\n"), 0o600)
}

// writeNodeFiles stores the certificates and keys the supervisor issued
// (keys 0600) and returns their paths.
func writeNodeFiles(dir string, files map[string][]byte) (pki.NodeBundle, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return pki.NodeBundle{}, err
	}
	// Each key just before its certificate (and a renewal's window in
	// which they do not match as short as it gets).
	names := slices.SortedFunc(maps.Keys(files), func(a, b string) int {
		if c := strings.Compare(strings.TrimSuffix(a, filepath.Ext(a)), strings.TrimSuffix(b, filepath.Ext(b))); c != 0 {
			return c
		}
		return strings.Compare(filepath.Ext(b), filepath.Ext(a)) // .key before .crt
	})
	for _, name := range names {
		data := files[name]
		if name != filepath.Base(name) || strings.HasPrefix(name, ".") {
			return pki.NodeBundle{}, fmt.Errorf("join: the server sent a bad file name %q", name)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			mode = 0o600
		}
		if err := pki.WriteFileAtomic(filepath.Join(dir, name), data, mode); err != nil {
			return pki.NodeBundle{}, err
		}
	}
	b := pki.NodeLayout(dir)
	for _, f := range []string{b.ServerCA, b.ClientCA, b.KubeletClientCert, b.KubeletClientKey, b.KubeletServingCert, b.KubeletServingKey, b.KubeProxyCert, b.KubeProxyKey, b.CoreDNSCert, b.CoreDNSKey} {
		if _, err := os.Stat(f); err != nil {
			return b, fmt.Errorf("join: the server did not send %s", filepath.Base(f))
		}
	}
	return b, nil
}
