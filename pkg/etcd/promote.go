package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	etcderrors "go.etcd.io/etcd/server/v3/etcdserver/errors"
)

// promoteRetry is how often a learner asks again to be promoted while the
// leader says it has not caught up yet.
const promoteRetry = 500 * time.Millisecond

// promote makes this member a voting member if it is a learner (a server
// that joined a running cluster; also one that stopped before its
// promotion). The leader refuses until the learner's log has caught up, so
// it retries until ctx is done.
func (m *Etcd) promote(ctx context.Context, e *embed.Etcd) error {
	if !e.Server.IsLearner() {
		return nil
	}
	id := uint64(e.Server.MemberID())
	log := m.cfg.Log.With("component", "etcd", "member", fmt.Sprintf("%x", id))
	log.Info("etcd member is a learner; asking the leader to promote it")
	for {
		_, err := e.Server.PromoteMember(ctx, id)
		switch {
		case err == nil, errors.Is(err, membership.ErrMemberNotLearner):
			log.Info("etcd member promoted to a voting member")
			return nil
		case errors.Is(err, etcderrors.ErrLearnerNotReady), errors.Is(err, etcderrors.ErrNotLeader),
			errors.Is(err, etcderrors.ErrTimeout), errors.Is(err, etcderrors.ErrNoLeader):
			log.Debug("etcd learner not promoted yet", "reason", err)
		default:
			log.Warn("etcd learner promotion failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd: promote learner %x: %w (last: %v)", id, ctx.Err(), err)
		case <-time.After(promoteRetry):
		}
		if !e.Server.IsLearner() {
			return nil
		}
	}
}
