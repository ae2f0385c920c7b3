package agent

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/nodemeta"
	"github.com/kedge-io/kedge/pkg/pki"
	"github.com/kedge-io/kedge/pkg/supervisor"
)

// supervisorApply returns the Apply of an agent: a node may neither set its
// own taints nor its kubernetes.io labels (NodeRestriction), so it asks the
// supervisor of any server (through its load balancer at serverURL, the CA
// checked against tok as at the join) to set them, authenticated by its
// kubelet client certificate (or, failing that, the token) and its node
// password.
func supervisorApply(serverURL string, tok join.Token, dataDir string, log *slog.Logger) nodemeta.Apply {
	return func(ctx context.Context, name string, want nodemeta.Spec) error {
		password, err := nodePassword(filepath.Join(Config{DataDir: dataDir}.Dir(), "node-password"))
		if err != nil {
			return err
		}
		req := supervisor.NodeConfigRequest{Name: name, Password: password, Labels: want.LabelFlags(), Taints: want.TaintFlags()}
		for _, ip := range want.ExternalIPs {
			req.ExternalIPs = append(req.ExternalIPs, ip.String())
		}
		var cert *tls.Certificate
		certs := pki.NodeLayout(filepath.Join(Config{DataDir: dataDir}.Dir(), "tls"))
		if c, err := tls.LoadX509KeyPair(certs.KubeletClientCert, certs.KubeletClientKey); err == nil {
			cert = &c
		}
		trusted, _ := os.ReadFile(certs.ServerCA)
		var applied nodemeta.Applied
		return join.PostTrusted(ctx, serverURL, tok, trusted, join.UserNode, cert, supervisor.NodeConfigPath, req, &applied, log)
	}
}
