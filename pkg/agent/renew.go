package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/kedge-io/kedge/pkg/certs"
	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/supervisor"
)

// renewTimeout bounds one renewal request to the supervisor.
const renewTimeout = 30 * time.Second

// NewRenewer returns the agent's certificate renewer: when a node
// certificate is due (pki.NodeDue: in its renewal window, SANs changed, or
// a rotation was requested) it asks the supervisor, through the apiserver
// address (the load balancer), for new ones, authenticated with the
// kubelet's client certificate and the node password (not the token,
// which may have changed), and stores them where the kubelet, kube-proxy,
// CoreDNS and flannel read them again. Leaves renewed for their age or SANs
// keep their keys (the supervisor signs the public keys), so no key file
// changes; a requested rotation gets new keys.
func NewRenewer(node Config, apiserver string, log *slog.Logger) *certs.Renewer {
	renew := func(ctx context.Context, rotate []string) ([]certs.Issued, error) {
		// The cluster's CAs first: after `kedge certificate rotate-ca` the
		// new bundles make every leaf due.
		if changed, err := syncCABundles(ctx, node, apiserver); err != nil {
			log.Warn("could not check the cluster's CA bundles", "err", err)
		} else if len(changed) > 0 {
			log.Info("the cluster's CA bundles changed (kedge certificate rotate-ca); stored", "files", changed)
		}
		due, err := pki.NodeDue(node.Certs, pki.NodeConfig{NodeName: node.NodeName, NodeIPs: []net.IP{node.NodeIP}, Rotate: rotate})
		if err != nil || len(due) == 0 {
			return nil, err
		}
		log.Info("node certificates due; asking the supervisor", "server", apiserver, "due", len(due))
		// Every leaf keeps its key unless it needs a new one: the
		// supervisor signs the public keys, and no key file changes.
		keep := map[string]string{}
		b := node.Certs
		for cert, key := range map[string]string{b.KubeletClientCert: b.KubeletClientKey, b.KubeletServingCert: b.KubeletServingKey, b.KubeProxyCert: b.KubeProxyKey, b.CoreDNSCert: b.CoreDNSKey} {
			if pki.NewKeyNeeded(due[cert]) {
				continue
			}
			if pub, err := pki.PublicKeyPEM(key); err == nil {
				keep[filepath.Base(cert)] = string(pub)
			}
		}
		files, err := requestNodeCerts(ctx, node, apiserver, keep)
		if err != nil {
			return nil, err
		}
		if _, err := writeNodeFiles(filepath.Join(node.Dir(), "tls"), files); err != nil {
			return nil, err
		}
		var issued []certs.Issued
		for name := range files {
			path := filepath.Join(node.Dir(), "tls", name)
			if filepath.Ext(name) != ".crt" || path == node.Certs.ServerCA || path == node.Certs.ClientCA {
				continue
			}
			reason := due[path]
			if reason == "" {
				reason = "renewed with the others"
			}
			issued = append(issued, certs.Issued{File: path, Reason: reason})
		}
		return issued, nil
	}
	return certs.New(certs.Config{
		Paths:  certs.Paths{DataDir: node.DataDir},
		Node:   node.NodeName,
		Renew:  renew,
		Client: kubeletClient(node),
		Log:    log,
	})
}

// requestNodeCerts POSTs the node's request to the supervisor at apiserver
// (host:port) over TLS verified against the node's server CA, with the
// kubelet client certificate.
func requestNodeCerts(ctx context.Context, node Config, apiserver string, publicKeys map[string]string) (map[string][]byte, error) {
	caPEM, err := os.ReadFile(node.Certs.ServerCA)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: no certificate", node.Certs.ServerCA)
	}
	pair, err := tls.LoadX509KeyPair(node.Certs.KubeletClientCert, node.Certs.KubeletClientKey)
	if err != nil {
		return nil, err
	}
	password, err := nodePassword(filepath.Join(node.Dir(), "node-password"))
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(apiserver)
	if err != nil {
		return nil, fmt.Errorf("apiserver address %q: %w", apiserver, err)
	}
	client := &http.Client{Timeout: renewTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, ServerName: host, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12,
	}}}
	defer client.CloseIdleConnections()
	body, _ := json.Marshal(supervisor.NodeRequest{Name: node.NodeName, Password: password, IPs: []string{node.NodeIP.String()}, PublicKeys: publicKeys})
	url := "https://" + apiserver + supervisor.NodePath
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("renew node certificates at %s: %w", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("renew node certificates at %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("renew node certificates at %s: %s: %s", url, resp.Status, bytes.TrimSpace(data))
	}
	var answer supervisor.NodeResponse
	if err := json.Unmarshal(data, &answer); err != nil {
		return nil, fmt.Errorf("renew node certificates at %s: %w", url, err)
	}
	return answer.Files, nil
}
