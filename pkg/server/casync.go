package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kedge-io/kedge/pkg/component"
)

// caResync is how often caSync reads the plan again besides its watch: a
// failed apply is retried then.
const caResync = 30 * time.Second

// caSync applies the cluster's CA rotation (CARotationPlanKey) on this
// server while it runs: it watches the key, and when another server ran
// `kedge certificate rotate-ca` (or its --finish) it writes the new CA
// files, issues its leaves again (under the renewer's lock) and reports
// the phase it reached under CARotationServersPrefix. On start it catches
// up with a rotation that happened while it was down, and a server that
// joined during a rotation reports the CAs it got with the join.
type caSync struct {
	component.Background
	rot  caRotator
	mu   *sync.Mutex // the renewer's
	last caReport    // the last report written (its time aside)
	log  *slog.Logger
}

var _ component.Component = (*caSync)(nil)

// Name implements component.Component.
func (*caSync) Name() string { return "ca-rotation" }

// Start watches the plan in the background (etcd may not answer yet).
func (s *caSync) Start(ctx context.Context) error {
	s.Context(ctx)
	s.Go(s.loop)
	return nil
}

// Ready implements component.Component.
func (*caSync) Ready(context.Context) error { return nil }

// loop watches until Stop; a broken watch is set up again.
func (s *caSync) loop(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := s.watch(ctx); err != nil && ctx.Err() == nil {
			s.log.Debug("CA rotation watch", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
	}
	return nil
}

// watch applies the plan as it is, then every change of it.
func (s *caSync) watch(ctx context.Context) error {
	client, err := s.rot.etcdClient()
	if err != nil {
		return err
	}
	p, _, rev, err := getPlan(ctx, client)
	if err != nil {
		return err
	}
	s.sync(ctx, client, p)
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	events := client.Watch(wctx, CARotationPlanKey, clientv3.WithRev(rev+1))
	tick := time.NewTicker(caResync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case wr, ok := <-events:
			if !ok {
				return nil
			}
			if err := wr.Err(); err != nil {
				return err
			}
			for _, ev := range wr.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				p, err := decodePlan(ev.Kv.Value)
				if err != nil {
					s.log.Warn("the cluster's CA rotation cannot be read", "err", err)
					continue
				}
				s.sync(ctx, client, p)
			}
		case <-tick.C:
			if p, _, _, err = getPlan(ctx, client); err != nil {
				return err
			}
			s.sync(ctx, client, p)
		}
	}
}

// sync applies p (none: nothing to do) and reports the phase reached.
func (s *caSync) sync(ctx context.Context, client *clientv3.Client, p *caPlan) {
	if p == nil {
		return
	}
	s.mu.Lock()
	issued, err := s.rot.applyPlan(ctx, *p)
	s.mu.Unlock()
	for _, is := range issued {
		s.log.Info("certificate renewed", "file", is.File, "reason", is.Reason)
	}
	r := caReport{ID: p.ID, Phase: p.Phase}
	if err != nil {
		r.Phase, r.Error = "", err.Error()
		s.log.Warn("could not apply the cluster's CA rotation; retrying", "phase", p.Phase, "started_on", p.Server, "err", err, "in", caResync)
	}
	if r == s.last {
		return
	}
	if err == nil {
		s.log.Info("CA rotation phase reached", "phase", p.Phase, "started_on", p.Server, "leaves", len(issued))
	}
	s.rot.report(ctx, client, r.ID, r.Phase, err)
	s.last = r
}
