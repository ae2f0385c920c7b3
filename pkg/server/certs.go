package server

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"sync"

	"github.com/kedge-io/kedge/pkg/certs"
	"github.com/kedge-io/kedge/pkg/pki"
)

// certRenewer keeps the server's certificates (and its node's) renewed
// while it runs: pki.Generate and pki.IssueNode with the settings of the
// start, then the --write-kubeconfig copy, which embeds the admin
// certificate. The in-process components read their certificates from the
// files (kubeconfigs with pki.KubeconfigOptions.ReferenceFiles; the
// apiserver, etcd and the kubelet reload their files themselves).
func certRenewer(cfg Config, pkiCfg pki.Config, admin pki.KubeconfigOptions, log *slog.Logger) *certs.Renewer {
	var mu sync.Mutex // Generate is not safe to run concurrently on one directory
	renew := func(_ context.Context, rotate []string) ([]certs.Issued, error) {
		mu.Lock()
		defer mu.Unlock()
		var issued []certs.Issued
		onIssue := func(path, reason string) { issued = append(issued, certs.Issued{File: path, Reason: reason}) }
		c := pkiCfg
		c.Rotate, c.OnIssue = rotate, onIssue
		b, err := pki.Generate(c)
		if err != nil {
			return issued, err
		}
		if !cfg.DisableAgent {
			n := nodePKI(cfg)
			n.Rotate, n.OnIssue = rotate, onIssue
			if _, err := pki.IssueNode(b, n); err != nil {
				return issued, err
			}
		}
		// The user's copy embeds the admin certificate; it exists once the
		// apiserver was ready (writeKubeconfig). Unchanged content is not
		// written again.
		if _, err := os.Stat(cfg.Kubeconfig); errors.Is(err, fs.ErrNotExist) {
			return issued, nil
		}
		return issued, pki.WriteKubeconfig(cfg.Kubeconfig, cfg.KubeconfigMode, admin)
	}
	return certs.New(certs.Config{
		Paths:  certs.Paths{DataDir: cfg.DataDir, Kubeconfigs: []string{cfg.Kubeconfig}},
		Node:   cfg.NodeName,
		Renew:  renew,
		Client: newAdminClient(cfg.adminKubeconfig()),
		Log:    log,
	})
}
