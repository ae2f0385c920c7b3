// Package leader runs a function only while this process holds a Lease,
// for the in-process controller-manager and scheduler.
//
// Upstream kube-controller-manager and kube-scheduler end the whole process
// (os.Exit) when their leader election stops, even on a requested shutdown.
// In kedge the process also holds etcd and the apiserver, which must close
// cleanly, so kedge runs the election itself and turns a lost lease into an
// error instead.
//
//	err := leader.Run(ctx, electionConfig, log, func(ctx context.Context) error {
//		return scheduler.Run(ctx) // runs until ctx is done
//	})
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"k8s.io/client-go/tools/leaderelection"
)

// ErrLost is returned when the lease was lost while the caller still wanted it.
var ErrLost = errors.New("leader election lost")

// Run campaigns with le (whose Lock and timings must be set; its Callbacks
// are replaced) and calls run while leading. It returns nil after ctx is done
// (releasing the lease), ErrLost if the lease was lost, or run's error.
func Run(ctx context.Context, le leaderelection.LeaderElectionConfig, log *slog.Logger, run func(context.Context) error) error {
	outer := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The elector calls OnStartedLeading in a goroutine of its own; hand the
	// leading context over to this one, so that run never outlives Run.
	leading := make(chan context.Context, 1)
	le.ReleaseOnCancel = true
	le.Callbacks = leaderelection.LeaderCallbacks{
		OnStartedLeading: func(leadCtx context.Context) { leading <- leadCtx },
		OnStoppedLeading: func() {},
	}
	elector, err := leaderelection.NewLeaderElector(le)
	if err != nil {
		return fmt.Errorf("leader election %s: %w", le.Name, err)
	}
	electorDone := make(chan struct{})
	go func() {
		defer close(electorDone)
		elector.Run(ctx)
	}()
	var runErr error
	select {
	case leadCtx := <-leading:
		// Debug: every server start takes a few; the Leases say who holds them.
		log.Debug("became leader", "lease", le.Name, "identity", le.Lock.Identity())
		if err := run(leadCtx); err != nil && leadCtx.Err() == nil {
			runErr = err
		}
		cancel() // release the lease if run returned on its own
		<-electorDone
	case <-electorDone:
	}
	switch {
	case outer.Err() != nil:
		return nil
	case runErr != nil:
		return runErr
	default:
		return fmt.Errorf("%s: %w", le.Name, ErrLost)
	}
}
