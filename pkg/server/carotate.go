package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kedge-io/kedge/pkg/certs"
	"github.com/kedge-io/kedge/pkg/join"
	"github.com/kedge-io/kedge/pkg/pki"
)

// CARotationFileName is the state of the last CA rotation, under
// <data-dir>/server (JSON CARotation, 0600).
const CARotationFileName = "ca-rotation.json"

// finishSlack is added to the time clients need to reconnect before
// `rotate-ca --finish` drops the old CAs.
const finishSlack = 30 * time.Second

// kubeletCheckTimeout bounds the TLS handshake with one node's kubelet
// that `rotate-ca --finish` makes.
const kubeletCheckTimeout = 5 * time.Second

// CARotation records the CA rotation of a server.
type CARotation struct {
	// Phase is certs.CAStart while the old CAs are still trusted, and
	// certs.CAFinish once they were dropped.
	Phase    string    `json:"phase"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	// PreviousCAHashes are the CA hashes of the tokens of the CAs this
	// server replaced: a --token pinned to one of them still starts this
	// server (its secret is what counts; the CA it holds is trusted).
	PreviousCAHashes []string `json:"previousCAHashes"`
}

// caRotationFile is where the server records its CA rotations.
func (c Config) caRotationFile() string { return filepath.Join(c.serverDir(), CARotationFileName) }

// readCARotation returns the recorded CA rotation; none: a zero CARotation.
func readCARotation(cfg Config) (CARotation, error) {
	var r CARotation
	data, err := os.ReadFile(cfg.caRotationFile())
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("%s: %w", cfg.caRotationFile(), err)
	}
	return r, nil
}

// writeCARotation records r.
func writeCARotation(cfg Config, r CARotation) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return pki.WriteFileAtomic(cfg.caRotationFile(), append(data, '\n'), 0o600)
}

// previousCAToken reports whether tok is pinned to a CA this server
// replaced with `kedge certificate rotate-ca`.
func previousCAToken(cfg Config, tok join.Token) bool {
	r, err := readCARotation(cfg)
	return err == nil && tok.Pinned() && slices.Contains(r.PreviousCAHashes, tok.CAHash)
}

// caRotator carries out `kedge certificate rotate-ca` on this server:
// renew is the server's renewal (under the renewer's lock), etcdClient
// the local etcd member's client.
type caRotator struct {
	cfg        Config
	renew      certs.RenewFunc
	etcdClient func() (*clientv3.Client, error)
	log        *slog.Logger
}

// rotate is a certs.RotateCAFunc; the caller holds the renewal lock.
func (c caRotator) rotate(ctx context.Context, phase string, force bool) ([]certs.Issued, error) {
	if err := c.singleServer(ctx); err != nil {
		return nil, err
	}
	b := pki.Layout(c.cfg.tlsDir())
	if phase == certs.CAFinish {
		return c.finish(ctx, b, force)
	}
	return c.start(ctx, b)
}

// start is the first phase: new CAs, bundles, new leaves, new tokens.
func (c caRotator) start(ctx context.Context, b pki.Bundle) ([]certs.Issued, error) {
	state, err := readCARotation(c.cfg)
	if err != nil {
		return nil, err
	}
	oldCA, err := pki.PinnedCA(b.ServerCA)
	if err != nil {
		return nil, err
	}
	if h := join.CAHash(oldCA); !slices.Contains(state.PreviousCAHashes, h) {
		state.PreviousCAHashes = append(state.PreviousCAHashes, h)
	}
	// Recorded first: a server restarted half-way still accepts its
	// --token of the old CA.
	state.Phase, state.Started, state.Finished = certs.CAStart, time.Now().UTC(), time.Time{}
	if err := writeCARotation(c.cfg, state); err != nil {
		return nil, err
	}
	begin := time.Now()
	if err := pki.StartCARotation(b, time.Now()); err != nil {
		return nil, err
	}
	c.log.Info("new CAs in place, cross-signed by the old ones; issuing every leaf again", "took", time.Since(begin).Round(time.Millisecond))
	issued, err := c.renew(ctx, nil) // every leaf: "not signed by the current CA"
	if err != nil {
		return issued, err
	}
	if err := c.rewriteTokens(b); err != nil {
		return issued, err
	}
	return issued, nil
}

// finish is the second phase: the old CAs leave the bundles, once every
// node serves a kubelet certificate of the new CA (unless force).
func (c caRotator) finish(ctx context.Context, b pki.Bundle, force bool) ([]certs.Issued, error) {
	state, err := readCARotation(c.cfg)
	if err != nil {
		return nil, err
	}
	if in, err := pki.CARotationInProgress(b); err != nil {
		return nil, err
	} else if !in {
		return nil, errors.New("no CA rotation is in progress: start one with `kedge certificate rotate-ca`")
	}
	if !force {
		// Open connections keep the client certificate of the old CA they
		// were made with until client-go notices the new files (agents
		// renew within a check interval of the start): dropping the old
		// CA before would answer them 401.
		ready := state.Started.Add(certs.DefaultMaxInterval + certs.ClientRefresh() + finishSlack)
		if wait := time.Until(ready); wait > 0 {
			return nil, fmt.Errorf("too early: clients reconnect with their certificates of the new CA within %s of the start (agents renew within %s, and client-go checks its certificate files every %s): run `kedge certificate rotate-ca --finish` after %s (in %s), or with --force",
				ready.Sub(state.Started).Round(time.Second), certs.DefaultMaxInterval, certs.ClientRefresh(), ready.Local().Format(time.TimeOnly), wait.Round(time.Second))
		}
		if err := c.nodesRenewed(ctx, b); err != nil {
			return nil, err
		}
	}
	if _, err := pki.FinishCARotation(b, time.Now()); err != nil {
		return nil, err
	}
	state.Phase, state.Finished = certs.CAFinish, time.Now().UTC()
	if err := writeCARotation(c.cfg, state); err != nil {
		return nil, err
	}
	// The node's CA copies and the --write-kubeconfig copy follow the
	// bundles; no leaf is due.
	issued, err := c.renew(ctx, nil)
	if err != nil {
		return issued, err
	}
	return issued, c.rewriteTokens(b)
}

// rewriteTokens writes the join and agent token files with the hash of the
// CA /cacerts serves now.
func (c caRotator) rewriteTokens(b pki.Bundle) error {
	ca, err := pki.PinnedCA(b.ServerCA)
	if err != nil {
		return err
	}
	for _, path := range []string{c.cfg.TokenFile(), c.cfg.AgentTokenFile()} {
		if _, err := join.EnsureTokenFile(path, ca, ""); err != nil {
			return err
		}
	}
	return nil
}

// singleServer refuses a rotation on a cluster of several servers: the
// other servers would not get the new CAs (not done yet).
func (c caRotator) singleServer(ctx context.Context) error {
	client, err := c.etcdClient()
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := client.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("etcd member list: %w", err)
	}
	if n := len(list.Members); n > 1 {
		return fmt.Errorf("this cluster has %d servers (etcd members): `kedge certificate rotate-ca` replaces the CAs of a cluster of one server only, for now (docs/certificates.md)", n)
	}
	return nil
}

// nodesRenewed checks on the wire that every Node's kubelet serves a
// certificate that the new server CA alone verifies: an agent renews its
// four leaves together, so its kubelet's serving certificate shows that
// its client certificates are of the new CA too.
func (c caRotator) nodesRenewed(ctx context.Context, b pki.Bundle) error {
	newCA, err := pki.PinnedCA(b.ServerCA)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(newCA)
	client, err := newAdminClient(c.cfg.adminKubeconfig())()
	if err != nil {
		return err
	}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list the nodes: %w", err)
	}
	var pending []string
	for _, n := range nodes.Items {
		if err := kubeletOfCA(ctx, n, roots); err != nil {
			pending = append(pending, fmt.Sprintf("%s (%v)", n.Name, err))
		}
	}
	if len(pending) > 0 {
		return fmt.Errorf("not every node has certificates of the new CA yet: %s; an agent renews within a minute of the start while it runs: run `kedge certificate rotate-ca --finish` again later, or with --force to drop the old CAs anyway (those nodes then need `kedge agent` restarted)", strings.Join(pending, "; "))
	}
	return nil
}

// kubeletOfCA dials the node's kubelet and verifies the certificate it
// serves against roots.
func kubeletOfCA(ctx context.Context, n corev1.Node, roots *x509.CertPool) error {
	var ip string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			ip = a.Address
			break
		}
	}
	port := int(n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if ip == "" || port == 0 {
		return errors.New("no InternalIP or kubelet port in its status")
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: kubeletCheckTimeout}, Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}} //nolint:gosec // verified below against the new CA only
	ctx, cancel := context.WithTimeout(ctx, kubeletCheckTimeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	defer conn.Close()
	leaf := conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
	// Signed by the new root itself, without the cross certificate's path
	// to the old one, which is about to go.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots}); err != nil {
		return fmt.Errorf("its kubelet serves a certificate of %s, not of the new CA", leaf.Issuer)
	}
	return nil
}
