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

// caRotator carries out `kedge certificate rotate-ca` on this server, and
// applies the rotations other servers of the cluster started (caSync):
// renew is the server's renewal (under the renewer's lock), etcdClient
// the local etcd member's client.
type caRotator struct {
	cfg        Config
	renew      certs.RenewFunc
	etcdClient func() (*clientv3.Client, error)
	log        *slog.Logger
}

// reportWait is how long a phase waits for the other servers to report
// that they reached it, before it answers with those that did not yet.
const reportWait = 40 * time.Second

// rotate is a certs.RotateCAFunc; the caller holds the renewal lock.
func (c caRotator) rotate(ctx context.Context, phase string, force bool) ([]certs.Issued, map[string]string, error) {
	client, err := c.etcdClient()
	if err != nil {
		return nil, nil, fmt.Errorf("etcd: %w", err)
	}
	b := pki.Layout(c.cfg.tlsDir())
	if phase == certs.CAFinish {
		return c.finish(ctx, client, b, force)
	}
	return c.start(ctx, client, b)
}

// start is the first phase: new CAs, bundles, new leaves, new tokens on
// this server; then the plan in etcd, which every other server applies
// (caSync).
func (c caRotator) start(ctx context.Context, client *clientv3.Client, b pki.Bundle) ([]certs.Issued, map[string]string, error) {
	plan, modRev, _, err := getPlan(ctx, client)
	if err != nil {
		return nil, nil, err
	}
	pinned, err := pki.PinnedCA(b.ServerCA)
	if err != nil {
		return nil, nil, err
	}
	inProgress, err := pki.CARotationInProgress(b)
	if err != nil {
		return nil, nil, err
	}
	// A start that stopped before its plan reached etcd (the CAs are new
	// here, the plan is of none or an older rotation) resumes with
	// publishing it; any other rotation in progress is finished first.
	resume := inProgress && (plan == nil || plan.ID != join.CAHash(pinned))
	if plan != nil && plan.Phase == certs.CAStart && !resume {
		return nil, nil, fmt.Errorf("a CA rotation started on server %s at %s is in progress: finish it first with `kedge certificate rotate-ca --finish`",
			plan.Server, plan.Started.Local().Format(time.DateTime))
	}
	state, err := readCARotation(c.cfg)
	if err != nil {
		return nil, nil, err
	}
	oldHash := join.CAHash(pinned)
	if resume && len(state.PreviousCAHashes) > 0 {
		oldHash = state.PreviousCAHashes[len(state.PreviousCAHashes)-1]
	}
	if !slices.Contains(state.PreviousCAHashes, oldHash) {
		state.PreviousCAHashes = append(state.PreviousCAHashes, oldHash)
	}
	// Recorded first: a server restarted half-way still accepts its
	// --token of the old CA.
	state.Phase, state.Started, state.Finished = certs.CAStart, time.Now().UTC(), time.Time{}
	if err := writeCARotation(c.cfg, state); err != nil {
		return nil, nil, err
	}
	begin := time.Now()
	if err := pki.StartCARotation(b, time.Now()); err != nil && !resume {
		return nil, nil, err
	}
	files, err := pki.CARotationFiles(b)
	if err != nil {
		return nil, nil, err
	}
	if pinned, err = pki.PinnedCA(b.ServerCA); err != nil {
		return nil, nil, err
	}
	next := caPlan{ID: join.CAHash(pinned), OldCAHash: oldHash, Phase: certs.CAStart, Started: state.Started, Server: c.cfg.NodeName}
	if err := next.seal(b.ServiceAccountKey, files); err != nil {
		return nil, nil, err
	}
	if err := putPlan(ctx, client, next, modRev); err != nil {
		return nil, nil, err
	}
	c.log.Info("new CAs in place, cross-signed by the old ones, and published to the other servers; issuing every leaf again", "took", time.Since(begin).Round(time.Millisecond))
	issued, err := c.renew(ctx, nil) // every leaf: "not signed by the current CA"
	if err != nil {
		return issued, nil, err
	}
	if err := c.rewriteTokens(b); err != nil {
		return issued, nil, err
	}
	c.report(ctx, client, next.ID, certs.CAStart, nil)
	phases, err := waitPhases(ctx, client, next.ID, reportWait, certs.CAStart)
	return issued, phases, err
}

// finish is the second phase: once every server applied the first (and,
// unless force, every node serves a kubelet certificate of the new CA),
// the plan in etcd says so, and every server drops the old CAs from its
// bundles, this one first.
func (c caRotator) finish(ctx context.Context, client *clientv3.Client, b pki.Bundle, force bool) ([]certs.Issued, map[string]string, error) {
	plan, modRev, _, err := getPlan(ctx, client)
	if err != nil {
		return nil, nil, err
	}
	in, err := pki.CARotationInProgress(b)
	if err != nil {
		return nil, nil, err
	}
	if plan == nil || plan.Phase != certs.CAStart {
		if in {
			return nil, nil, errors.New("this server's CA files are bundles of two CAs, but no CA rotation of the cluster is in progress (etcd " + CARotationPlanKey + "): run `kedge certificate rotate-ca` again to publish it")
		}
		return nil, nil, errors.New("no CA rotation is in progress: start one with `kedge certificate rotate-ca`")
	}
	if !force {
		phases, err := serverPhases(ctx, client, plan.ID)
		if err != nil {
			return nil, nil, err
		}
		if pending := pendingServers(phases, certs.CAStart, certs.CAFinish); len(pending) > 0 {
			return nil, phases, fmt.Errorf("not every server has the new CAs yet: %s; a running server applies them within seconds of the start: run `kedge certificate rotate-ca --finish` again later, or with --force (a server that is down then applies both phases when it starts)", strings.Join(pending, ", "))
		}
		// Open connections keep the client certificate of the old CA they
		// were made with until client-go notices the new files (agents
		// renew within a check interval of the start): dropping the old
		// CA before would answer them 401.
		ready := plan.Started.Add(certs.DefaultMaxInterval + certs.ClientRefresh() + finishSlack)
		if wait := time.Until(ready); wait > 0 {
			return nil, nil, fmt.Errorf("too early: clients reconnect with their certificates of the new CA within %s of the start (agents renew within %s, and client-go checks its certificate files every %s): run `kedge certificate rotate-ca --finish` after %s (in %s), or with --force",
				ready.Sub(plan.Started).Round(time.Second), certs.DefaultMaxInterval, certs.ClientRefresh(), ready.Local().Format(time.TimeOnly), wait.Round(time.Second))
		}
		if err := c.nodesRenewed(ctx, b); err != nil {
			return nil, nil, err
		}
	}
	done := *plan
	done.Phase = certs.CAFinish
	if err := putPlan(ctx, client, done, modRev); err != nil {
		return nil, nil, err
	}
	issued, err := c.applyPlan(ctx, done)
	c.report(ctx, client, done.ID, certs.CAFinish, err)
	if err != nil {
		return issued, nil, err
	}
	phases, err := waitPhases(ctx, client, done.ID, reportWait, certs.CAFinish)
	return issued, phases, err
}

// applyPlan brings this server to the phase of p: the new CA files
// (unless it has them: it started the rotation, joined during it, or
// applied it before), every leaf issued again and the token files with
// the new CA hash; at CAFinish, the old CAs dropped. Each step is
// idempotent: a server restarted half-way completes it.
func (c caRotator) applyPlan(ctx context.Context, p caPlan) ([]certs.Issued, error) {
	b := pki.Layout(c.cfg.tlsDir())
	files, err := p.files(b.ServiceAccountKey)
	if err != nil {
		return nil, err
	}
	state, err := readCARotation(c.cfg)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(state.PreviousCAHashes, p.OldCAHash) {
		// Before the CAs change: restarted half-way, this server still
		// accepts its --token of the old CA.
		state.PreviousCAHashes = append(state.PreviousCAHashes, p.OldCAHash)
		if state.Phase == "" {
			state.Phase, state.Started = certs.CAStart, p.Started
		}
		if err := writeCARotation(c.cfg, state); err != nil {
			return nil, err
		}
	}
	changed, err := pki.ApplyCARotationFiles(b, files)
	if err != nil {
		return nil, err
	}
	if len(changed) > 0 {
		c.log.Info("the cluster's new CAs are in place (kedge certificate rotate-ca on "+p.Server+"); issuing every leaf again", "files", len(changed))
		state.Phase, state.Started, state.Finished = certs.CAStart, p.Started, time.Time{}
		if err := writeCARotation(c.cfg, state); err != nil {
			return nil, err
		}
	}
	issued, err := c.renew(ctx, nil) // what the new CAs made due
	if err != nil {
		return issued, err
	}
	if p.Phase == certs.CAFinish {
		in, err := pki.CARotationInProgress(b)
		if err != nil {
			return issued, err
		}
		if in {
			if _, err := pki.FinishCARotation(b, time.Now()); err != nil {
				return issued, err
			}
			c.log.Info("the old CAs were dropped from the bundles (kedge certificate rotate-ca --finish)")
			state.Phase, state.Finished = certs.CAFinish, time.Now().UTC()
			if err := writeCARotation(c.cfg, state); err != nil {
				return issued, err
			}
			// The node's CA copies and the --write-kubeconfig copy follow
			// the bundles; no leaf is due.
			more, err := c.renew(ctx, nil)
			issued = append(issued, more...)
			if err != nil {
				return issued, err
			}
		}
	}
	return issued, c.rewriteTokens(b)
}

// report records in etcd the phase of rotation id this server reached
// (or its error); a failure is logged: the next sync reports again.
func (c caRotator) report(ctx context.Context, client *clientv3.Client, id, phase string, failed error) {
	r := caReport{ID: id, Phase: phase, Time: time.Now().UTC()}
	if failed != nil {
		r.Phase, r.Error = "", failed.Error()
	}
	if err := putReport(ctx, client, c.cfg.NodeName, r); err != nil {
		c.log.Warn("could not report the CA rotation's phase", "err", err)
	}
}

// rewriteTokens writes the join and agent token files with the hash of the
// CA /cacerts serves now.
func (c caRotator) rewriteTokens(b pki.Bundle) error {
	ca, err := pki.PinnedCA(b.ServerCA)
	if err != nil {
		return err
	}
	for _, path := range []string{c.cfg.TokenFile(), c.cfg.AgentTokenFile()} {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			continue // a server joined to a cluster without an agent token
		}
		if _, err := join.EnsureTokenFile(path, ca, ""); err != nil {
			return err
		}
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
