package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// HealthyChecks is how many checks in a row, CheckEvery apart, AfterLost
// wants before it lets the process end.
const (
	HealthyChecks = 3
	CheckEvery    = 2 * time.Second
)

// AfterLost is what a component does with Run's error: ErrLost does not end
// the process at once. A lost lease means the control plane could not
// write for a while (a partition of this server, an etcd election, a full
// disk): ending the process then would take this server's etcd member and
// apiserver away while the cluster needs them. Upstream controllers cannot
// run twice in one process, so the process must restart to lead again:
// AfterLost logs why and waits until healthy succeeds HealthyChecks times in
// a row, then returns err, which ends the process for the service manager to
// restart. Other errors, and nil, are returned at once.
func AfterLost(ctx context.Context, log *slog.Logger, err error, healthy func(context.Context) error) error {
	return afterLost(ctx, log, err, healthy, CheckEvery)
}

// afterLost is AfterLost with the checks every apart.
func afterLost(ctx context.Context, log *slog.Logger, err error, healthy func(context.Context) error, every time.Duration) error {
	if !errors.Is(err, ErrLost) || ctx.Err() != nil {
		return err
	}
	log.Error("lost the leader lease: its controllers stopped and another server may lead; kedge restarts once its control plane is healthy again (upstream controllers cannot run twice in one process)", "error", err)
	begin := time.Now()
	ok := 0
	tick := time.NewTicker(every)
	defer tick.Stop()
	for ok < HealthyChecks {
		select {
		case <-ctx.Done():
			return nil // a requested stop: nothing failed
		case <-tick.C:
		}
		if healthy(ctx) == nil {
			ok++
		} else {
			ok = 0
		}
	}
	return fmt.Errorf("%w; the control plane is healthy again after %s: restarting to campaign again", err, time.Since(begin).Round(time.Second))
}

// APIReady returns a check of the apiserver's /readyz with kubeconfig (the
// component's own client credentials).
func APIReady(kubeconfig string) func(context.Context) error {
	return func(ctx context.Context) error {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return err
		}
		cfg.Timeout = 2 * time.Second
		c, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		body, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return err
		}
		if string(body) != "ok" {
			return fmt.Errorf("/readyz: %.100s", body)
		}
		return nil
	}
}
