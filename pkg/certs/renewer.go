package certs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/pki"
)

// DefaultMaxInterval is the longest a renewer waits between two checks.
const DefaultMaxInterval = time.Minute

// requestPoll is how often the renewer looks for a rotation request.
const requestPoll = time.Second

// warnEvery is how often the same certificate's Warning is repeated.
const warnEvery = 24 * time.Hour

// RenewFunc issues again the leaves that are due (pki.Generate,
// pki.IssueNode, or an agent's request to the supervisor), and those of the
// services in rotate whatever their state, and returns what it issued.
type RenewFunc func(ctx context.Context, rotate []string) ([]Issued, error)

// RotateCAFunc carries out a phase of a CA rotation (CAStart, CAFinish;
// force skips the checks of CAFinish) and returns the leaves it issued and
// the phase every server of the cluster reached (Result.Servers).
type RotateCAFunc func(ctx context.Context, phase string, force bool) ([]Issued, map[string]string, error)

// Config describes a node's certificate renewer.
type Config struct {
	// Paths are the node's certificates, listed after each check for the
	// metric and the Events.
	Paths Paths
	// Node is the Node the Events are recorded on.
	Node string
	// Renew does the renewing.
	Renew RenewFunc
	// RotateCA answers `kedge certificate rotate-ca`; nil (an agent): such
	// a request is answered with an error.
	RotateCA RotateCAFunc
	// Client returns a client of the API for the Events; nil: no Events.
	Client func() (kubernetes.Interface, error)
	// MaxInterval is the longest wait between two checks; 0 means
	// DefaultMaxInterval. A check also runs when the first leaf enters its
	// renewal window, and within a second of a rotation request.
	MaxInterval time.Duration
	Log         *slog.Logger
}

// Renewer keeps a node's certificates renewed while kedge runs: it calls
// Renew when a leaf enters its renewal window and on `kedge certificate
// rotate`, publishes kedge_certificate_expiration_seconds for every
// certificate and records Events on the Node.
type Renewer struct {
	component.Background
	cfg    Config
	client kubernetes.Interface
	warned map[string]time.Time // label/serial → last Warning
	next   time.Time
}

var _ component.Component = (*Renewer)(nil)
var _ component.Failer = (*Renewer)(nil)

// New returns a renewer; nothing runs until Start.
func New(cfg Config) *Renewer {
	if cfg.MaxInterval <= 0 {
		cfg.MaxInterval = DefaultMaxInterval
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Renewer{cfg: cfg, warned: map[string]time.Time{}}
}

// Name implements component.Component.
func (*Renewer) Name() string { return "certificates" }

// Start runs a first check (a pending rotation request included; a failure
// is logged and retried), sets client-go's certificate refresh period
// (scaleClientRefresh), then keeps checking in the background.
func (r *Renewer) Start(ctx context.Context) error {
	ctx = r.Context(ctx)
	if err := r.pass(ctx); err != nil {
		// Not fatal: what is due is retried (an agent's supervisor may not
		// answer yet); the files of the start are valid.
		r.cfg.Log.Warn("certificate check failed; retrying", "err", err, "in", r.cfg.MaxInterval)
	}
	if list, err := Scan(r.cfg.Paths); err == nil {
		scaleClientRefresh(list) // before the other components build their clients
	}
	r.Go(r.loop)
	return nil
}

// Ready implements component.Component.
func (*Renewer) Ready(context.Context) error { return nil }

// loop checks whenever pass scheduled it, and on requests.
func (r *Renewer) loop(ctx context.Context) error {
	tick := time.NewTicker(requestPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := r.pass(ctx); err != nil {
			r.cfg.Log.Warn("certificate check failed; retrying", "err", err, "in", r.cfg.MaxInterval)
		}
	}
}

// pass answers a rotation request, or renews what is due when the
// schedule says so, then publishes the metric and the Events.
func (r *Renewer) pass(ctx context.Context) error {
	now := time.Now()
	req, reqErr := takeRequest(r.cfg.Paths.DataDir)
	if req == nil && reqErr == nil && now.Before(r.next) {
		return nil
	}
	r.next = now.Add(r.cfg.MaxInterval) // a failing check is retried then
	var (
		issued   []Issued
		servers  map[string]string
		renewErr error
	)
	switch {
	case reqErr != nil:
		renewErr = reqErr
	case req != nil && req.CA != "" && r.cfg.RotateCA == nil:
		renewErr = errors.New("CAs are rotated on a server, not on an agent: run `kedge certificate rotate-ca` there")
	case req != nil && req.CA != "":
		r.cfg.Log.Info("CA rotation requested", "phase", req.CA, "force", req.Force)
		issued, servers, renewErr = r.cfg.RotateCA(ctx, req.CA, req.Force)
	case req != nil:
		rotate := req.Services
		if len(rotate) == 0 {
			rotate = pki.Services()
		}
		r.cfg.Log.Info("certificate rotation requested", "services", strings.Join(rotate, ","))
		issued, renewErr = r.cfg.Renew(ctx, rotate)
	default:
		issued, renewErr = r.cfg.Renew(ctx, nil)
	}
	if req != nil {
		res := Result{ID: req.ID, Issued: issued, Servers: servers}
		if renewErr != nil {
			res.Error = renewErr.Error()
		}
		if err := writeResult(r.cfg.Paths.DataDir, res); err != nil {
			renewErr = errors.Join(renewErr, err)
		}
	}
	took := time.Since(now)
	for _, is := range issued {
		r.cfg.Log.Info("certificate renewed", "file", is.File, "reason", is.Reason, "took", took.Round(time.Millisecond))
		r.event(ctx, false, ReasonRenewed, fmt.Sprintf("%s issued again (%s)", is.File, is.Reason))
	}
	if renewErr != nil {
		r.cfg.Log.Warn("certificate renewal failed", "err", renewErr)
		r.event(ctx, true, ReasonRenewFailed, renewErr.Error())
	}
	certs, err := Scan(r.cfg.Paths)
	if err != nil {
		return errors.Join(renewErr, err)
	}
	publish(certs)
	r.schedule(certs, time.Now(), renewErr != nil)
	r.warn(ctx, certs, time.Now())
	return renewErr
}

// schedule sets the next check: at the latest MaxInterval from now, and
// when the first leaf enters its renewal window. A leaf that entered it
// while this pass ran (a renewal can take seconds: the apiserver's kubelet
// client is exercised after its renewal) is due now, unless the pass
// failed: a failing renewal is retried after MaxInterval.
func (r *Renewer) schedule(certs []Cert, now time.Time, failed bool) {
	next := now.Add(r.cfg.MaxInterval)
	for _, c := range certs {
		if c.CA {
			continue
		}
		at := pki.RenewAt(c.cert)
		if !at.After(now) {
			if failed {
				continue
			}
			at = now
		}
		if at.Before(next) {
			next = at
		}
	}
	r.next = next
}

// warn records a Warning for each certificate still in its renewal window
// after a check: a CA (kedge does not replace CAs by itself), or a leaf
// whose renewal failed. Each certificate's Warning repeats once a day.
func (r *Renewer) warn(ctx context.Context, certs []Cert, now time.Time) {
	for _, c := range certs {
		if !pki.NeedsRenewal(c.cert, now) {
			continue
		}
		key := c.Label() + "/" + c.Serial
		if last, ok := r.warned[key]; ok && now.Sub(last) < warnEvery {
			continue
		}
		r.warned[key] = now
		what := "it was not renewed: see kedge's log"
		if c.CA {
			what = "it is a CA, which kedge does not replace by itself: run `kedge certificate rotate-ca` (docs/certificates.md)"
		}
		msg := fmt.Sprintf("certificate %s (%s) expires at %s, in %d days; %s", c.Label(), c.Subject, c.NotAfter.Format(time.RFC3339), DaysLeft(c.NotAfter, now), what)
		r.cfg.Log.Warn("certificate expiring", "file", c.Label(), "not_after", c.NotAfter, "ca", c.CA)
		r.event(ctx, true, ReasonExpiring, msg)
	}
}

// event records an Event on the Node, best effort (the API may not be up
// yet at the first check).
func (r *Renewer) event(ctx context.Context, warning bool, reason, msg string) {
	if r.cfg.Client == nil {
		return
	}
	if r.client == nil {
		c, err := r.cfg.Client()
		if err != nil {
			r.cfg.Log.Debug("no client for certificate events", "err", err)
			return
		}
		r.client = c
	}
	if err := recordEvent(ctx, r.client, r.cfg.Node, warning, reason, msg); err != nil {
		r.cfg.Log.Debug("certificate event not recorded", "reason", reason, "err", err)
	}
}
