package server

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kedge-io/kedge/pkg/certs"
	"github.com/kedge-io/kedge/pkg/pki"
)

// certRenewer keeps the server's certificates (and its node's) renewed
// while it runs: pki.Generate and pki.IssueNode with the settings of the
// start, then the --write-kubeconfig copy, which embeds the admin
// certificate. The in-process components read their certificates from the
// files (kubeconfigs with pki.KubeconfigOptions.ReferenceFiles; the
// apiserver, etcd and the kubelet reload their files themselves).
//
// It also answers `kedge certificate rotate-ca` (caRotator), and the
// returned caSync applies the rotations of the cluster, under the same
// lock.
func certRenewer(cfg Config, pkiCfg pki.Config, admin pki.KubeconfigOptions, etcdClient func() (*clientv3.Client, error), log *slog.Logger) (*certs.Renewer, *caSync) {
	var mu sync.Mutex // Generate is not safe to run concurrently on one directory
	renewLocked := func(ctx context.Context, rotate []string) ([]certs.Issued, error) {
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
		for _, is := range issued {
			if is.File == b.APIServerKubeletClientCert && !cfg.DisableAgent {
				absorbKubeletClientSwitch(ctx, cfg, log)
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
	renew := func(ctx context.Context, rotate []string) ([]certs.Issued, error) {
		mu.Lock()
		defer mu.Unlock()
		return renewLocked(ctx, rotate)
	}
	ca := caRotator{cfg: cfg, renew: renewLocked, etcdClient: etcdClient, log: log}
	rotateCA := func(ctx context.Context, phase string, force bool) ([]certs.Issued, map[string]string, error) {
		mu.Lock()
		defer mu.Unlock()
		return ca.rotate(ctx, phase, force)
	}
	return certs.New(certs.Config{
		Paths:    certs.Paths{DataDir: cfg.DataDir, Kubeconfigs: []string{cfg.Kubeconfig}},
		Node:     cfg.NodeName,
		Renew:    renew,
		RotateCA: rotateCA,
		Client:   newAdminClient(cfg.adminKubeconfig()),
		Log:      log,
	}), &caSync{rot: ca, mu: &mu, log: log.With("component", "ca-rotation")}
}

// absorbKubeletClientSwitch makes one request from the apiserver to the
// local kubelet right after the apiserver's kubelet client certificate was
// renewed. Upstream client-go, on the first handshake that loads a changed
// client certificate, closes all its connections, the one being set up
// included: that first request fails. Made here, the failure is kedge's
// own (ignored), not that of the next `kubectl logs` or `exec`.
func absorbKubeletClientSwitch(ctx context.Context, cfg Config, log *slog.Logger) {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.HTTPSPort)), time.Second)
	if err != nil {
		return // the apiserver is not up (a rotation at start): nothing to absorb
	}
	_ = conn.Close()
	client, err := newAdminClient(cfg.adminKubeconfig())()
	if err != nil {
		return
	}
	path := "/api/v1/nodes/" + cfg.NodeName + "/proxy/healthz"
	for range 2 { // the first fails by design; the second shows it is over
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = client.CoreV1().RESTClient().Get().AbsPath(path).DoRaw(ctx)
		cancel()
		if err == nil {
			return
		}
	}
	log.Debug("apiserver → kubelet after the client certificate renewal", "err", err)
}
