package leader

import (
	"context"
	"errors"
	"log/slog"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
)

// Campaign runs run while this process holds the Lease name in kube-system
// (Lease's timings), and campaigns again when the lease is lost, until ctx
// is done. It is for kedge's own controllers, whose run builds its
// informers and queues anew for each term; upstream's controller-manager
// and scheduler cannot run twice in one process and use Run and AfterLost
// instead. It returns nil once ctx is done, or run's error.
func Campaign(ctx context.Context, client kubernetes.Interface, name string, log *slog.Logger, run func(context.Context) error) error {
	return campaign(ctx, func() (leaderelection.LeaderElectionConfig, error) { return Lease(client, name) }, log, run)
}

// campaign is Campaign with each term's election from elect.
func campaign(ctx context.Context, elect func() (leaderelection.LeaderElectionConfig, error), log *slog.Logger, run func(context.Context) error) error {
	for {
		election, err := elect()
		if err != nil {
			return err
		}
		err = Run(ctx, election, log, run)
		if !errors.Is(err, ErrLost) || ctx.Err() != nil {
			return err
		}
		log.Warn("lost the leader lease: campaigning again", "lease", election.Name, "error", err)
	}
}
