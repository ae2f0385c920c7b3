package netpol

import (
	"context"
	"errors"
	"time"

	"github.com/coreos/go-iptables/iptables"

	"github.com/kedge-io/kedge/pkg/component"
)

// ForwardChain is the top chain of kube-router's filter rules; a node
// that enforced policies has it.
const ForwardChain = "KUBE-ROUTER-FORWARD"

// Cleanup removes the rules and ipsets a node's policy controller left,
// for a node started with --disable network-policy: without it the last
// policies would stay enforced. It does nothing on a node without them.
type Cleanup struct{ cfg Config }

var _ component.Component = (*Cleanup)(nil)

// NewCleanup returns the cleanup; nothing runs until Start.
func NewCleanup(cfg Config) *Cleanup { return &Cleanup{cfg: cfg} }

// Name implements component.Component.
func (*Cleanup) Name() string { return "network-policy-cleanup" }

// Start removes kube-router's chains, rules and ipsets with the
// controller's own Cleanup, if ForwardChain exists.
func (c *Cleanup) Start(ctx context.Context) error {
	ipt, err := iptables.NewWithProtocol(iptables.ProtocolIPv4)
	if err != nil {
		return nil // no iptables: nothing was enforced here
	}
	if ok, err := ipt.ChainExists("filter", ForwardChain); err != nil || !ok {
		return nil
	}
	if c.cfg.ServiceCIDR == "" {
		// An agent that started from a join remembered by an older kedge:
		// its background join brings the CIDR and restarts it.
		c.cfg.Log.Warn("network policy rules left in place until the service CIDR is known (the next join brings it)")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	b, err := build(ctx, c.cfg)
	if err != nil {
		return err
	}
	b.npc.Cleanup()
	if ok, err := ipt.ChainExists("filter", ForwardChain); err == nil && ok {
		return errors.New("kube-router's rules are still in place after their cleanup (see the log above); remove the KUBE-ROUTER-* and KUBE-POD-FW-* chains by hand")
	}
	c.cfg.Log.Info("network policy rules removed (--disable " + AddonName + ")")
	return nil
}

// Ready returns at once.
func (*Cleanup) Ready(context.Context) error { return nil }

// Stop does nothing.
func (*Cleanup) Stop(context.Context) error { return nil }
