package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/supervisor"
)

// caBundlesTimeout bounds the request of the cluster's CA bundles.
const caBundlesTimeout = 10 * time.Second

// syncCABundles fetches the cluster's CA bundles from the supervisor at
// apiserver (host:port, the load balancer), over TLS verified against the
// node's server CA, and stores those that differ from the node's copies
// (server-ca.crt, client-ca.crt in node.Certs). It returns the files it
// replaced. After `kedge certificate rotate-ca` the bundles hold the new CA
// first: pki.NodeDue then finds every leaf "not signed by the current CA"
// and the renewer asks for new ones; after `--finish` the old CA leaves the
// copies. A server without the path (an older kedge) answers 404: nothing
// changes.
func syncCABundles(ctx context.Context, node Config, apiserver string) ([]string, error) {
	caPEM, err := os.ReadFile(node.Certs.ServerCA)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: no certificate", node.Certs.ServerCA)
	}
	host, _, err := net.SplitHostPort(apiserver)
	if err != nil {
		return nil, fmt.Errorf("apiserver address %q: %w", apiserver, err)
	}
	client := &http.Client{Timeout: caBundlesTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12,
	}}}
	defer client.CloseIdleConnections()
	url := "https://" + apiserver + supervisor.CABundlesPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("CA bundles at %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("CA bundles at %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("CA bundles at %s: %s", url, resp.Status)
	}
	var answer supervisor.CABundles
	if err := json.Unmarshal(data, &answer); err != nil {
		return nil, fmt.Errorf("CA bundles at %s: %w", url, err)
	}
	var changed []string
	for _, path := range []string{node.Certs.ServerCA, node.Certs.ClientCA} {
		bundle, ok := answer.Files[filepath.Base(path)]
		if !ok {
			return changed, fmt.Errorf("CA bundles at %s: no %s", url, filepath.Base(path))
		}
		if p := x509.NewCertPool(); !p.AppendCertsFromPEM(bundle) {
			return changed, fmt.Errorf("CA bundles at %s: %s holds no certificate", url, filepath.Base(path))
		}
		if old, err := os.ReadFile(path); err == nil && string(old) == string(bundle) {
			continue
		}
		if err := pki.WriteFileAtomic(path, bundle, 0o644); err != nil {
			return changed, err
		}
		changed = append(changed, path)
	}
	return changed, nil
}
