package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"

	"github.com/kedge-io/kedge/pkg/flannel"
	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/upgrade"
)

// joined is what an agent remembers of its last join, beside the
// certificates in <data-dir>/agent/tls: the cluster's settings and its
// servers. With both, the agent starts without a server.
type joined struct {
	Server         string   `json:"server"` // the --server it joined
	ClusterCIDR    string   `json:"clusterCIDR"`
	ServiceCIDR    string   `json:"serviceCIDR,omitempty"` // empty: remembered by an older kedge, taken from the next join
	ClusterDomain  string   `json:"clusterDomain"`
	ClusterDNS     string   `json:"clusterDNS"`
	FlannelBackend string   `json:"flannelBackend"`
	Disabled       []string `json:"disabled,omitempty"`
	Servers        []string `json:"servers"`
}

// joinedFile is where the last join is remembered.
func joinedFile(node Config) string { return filepath.Join(node.Dir(), "etc", "joined.json") }

// saveJoined records node's join (0600, atomically).
func saveJoined(node Config, serverURL string) error {
	j := joined{Server: serverURL, ClusterCIDR: node.ClusterCIDR, ServiceCIDR: node.ServiceCIDR, ClusterDomain: node.ClusterDomain,
		ClusterDNS: node.ClusterDNS.String(), FlannelBackend: string(node.FlannelBackend), Disabled: node.Disabled, Servers: node.Servers}
	raw, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	return pki.WriteFileAtomic(joinedFile(node), append(raw, '\n'), 0o600)
}

// loadJoined completes node from its last join to serverURL: the settings
// and servers it remembers and the certificates it holds. It reports false
// (and no error) when the node has not joined serverURL before, or lost its
// certificates: then it must join first.
func loadJoined(node *Config, serverURL string) (bool, error) {
	raw, err := os.ReadFile(joinedFile(*node))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	var j joined
	if err := json.Unmarshal(raw, &j); err != nil {
		return false, fmt.Errorf("%s: %w (remove it to join again)", joinedFile(*node), err)
	}
	if j.Server != serverURL {
		return false, nil // joins the new --server
	}
	certs := pki.NodeLayout(filepath.Join(node.Dir(), "tls"))
	for _, f := range []string{certs.ServerCA, certs.ClientCA, certs.KubeletClientCert, certs.KubeletClientKey, certs.KubeletServingCert, certs.KubeletServingKey, certs.KubeProxyCert, certs.KubeProxyKey, certs.CoreDNSCert, certs.CoreDNSKey} {
		if _, err := os.Stat(f); err != nil {
			return false, nil
		}
	}
	backend, err := flannel.ParseBackend(j.FlannelBackend)
	if err != nil {
		return false, fmt.Errorf("%s: %w", joinedFile(*node), err)
	}
	dns := net.ParseIP(j.ClusterDNS)
	if dns == nil || len(j.Servers) == 0 {
		return false, fmt.Errorf("%s: no cluster DNS address or servers (remove it to join again)", joinedFile(*node))
	}
	node.Certs, node.ClusterCIDR, node.ServiceCIDR, node.ClusterDomain, node.ClusterDNS = certs, j.ClusterCIDR, j.ServiceCIDR, j.ClusterDomain, dns
	node.FlannelBackend, node.Disabled, node.Servers = backend, j.Disabled, j.Servers
	return true, nil
}

// rejoin joins again in the background, for an agent that started from its
// last join: it waits for a server as long as it takes, then hands the
// servers it learnt to update. Settings that changed meanwhile apply at the
// next start. A definite refusal (join.Permanent: the name is another
// machine's, the cluster's CA changed, a version the cluster does not
// accept) ends the agent as it would have ended a start that waited for the
// join: refuse is called with it. Anything else is logged.
func rejoin(ctx context.Context, node Config, serverURL, token string, update func([]string), refuse context.CancelCauseFunc, log *slog.Logger) {
	was := node
	if err := Join(ctx, &node, serverURL, token, log); err != nil {
		switch {
		case ctx.Err() != nil:
		case join.Permanent(err):
			refuse(&refusedError{err: err})
		default:
			log.Error("joining again failed; the node runs on with its certificates", "component", "agent", "server", serverURL, "err", err)
		}
		return
	}
	update(node.Servers)
	if node.ClusterCIDR != was.ClusterCIDR || node.ServiceCIDR != was.ServiceCIDR || node.ClusterDomain != was.ClusterDomain || !node.ClusterDNS.Equal(was.ClusterDNS) ||
		node.FlannelBackend != was.FlannelBackend || !slices.Equal(node.Disabled, was.Disabled) {
		// The node's components were chosen from the old settings
		// (--disable, the pod network, the service CIDR NetworkPolicy
		// enforcement needs): start again with the new ones,
		// as an upgraded binary does (the join stored them).
		log.Warn("the cluster's settings changed since the last join: restarting to apply them", "component", "agent",
			"disabled", node.Disabled, "was_disabled", was.Disabled, "service_cidr", node.ServiceCIDR, "was_service_cidr", was.ServiceCIDR)
		refuse(&refusedError{err: fmt.Errorf("the cluster's settings changed since the last join: %w", upgrade.ErrRestart)})
	}
}

// refusedError is the cause of an agent's end when the cluster refused its
// join again.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// refusal returns the refusal that ended ctx, if one did.
func refusal(ctx context.Context) error {
	var r *refusedError
	if cause := context.Cause(ctx); errors.As(cause, &r) {
		return r.err
	}
	return nil
}
