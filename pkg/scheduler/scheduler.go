// Package scheduler runs kube-scheduler in the kedge process, from the
// upstream k8s.io/kubernetes/cmd/kube-scheduler/app library, under kedge's
// own leader election (see package leader).
//
//	s := scheduler.New(scheduler.Config{Kubeconfig: path, Log: log})
//	_ = s.Start(ctx)
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/cache"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"

	"github.com/kedge-io/kedge/pkg/args"
	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/leader"
	"github.com/kedge-io/kedge/pkg/logging"
)

// Config describes the scheduler of one server node.
type Config struct {
	Kubeconfig string // scheduler's client kubeconfig
	// ServingCert and ServingKey are its HTTPS certificate (pki.Bundle's
	// SchedulerServingCert); empty, the scheduler generates a self-signed
	// RSA pair on every start, as upstream's does without --tls-cert-file.
	ServingCert, ServingKey string
	ExtraArgs               []string // --kube-scheduler-arg key=value
	Log                     *slog.Logger
}

// Scheduler is the kube-scheduler component.
type Scheduler struct {
	component.Background
	cfg Config
}

var _ component.Component = (*Scheduler)(nil)
var _ component.Failer = (*Scheduler)(nil)

// New returns a scheduler component; nothing runs until Start.
func New(cfg Config) *Scheduler { return &Scheduler{cfg: cfg} }

// Name implements component.Component.
func (*Scheduler) Name() string { return "scheduler" }

// Args renders the kube-scheduler flags: kedge's defaults, then the user's
// --kube-scheduler-arg values.
func Args(cfg Config) ([]string, error) {
	defaults := map[string]string{
		"authentication-kubeconfig": cfg.Kubeconfig,
		"authorization-kubeconfig":  cfg.Kubeconfig,
		"bind-address":              "127.0.0.1",
		"kubeconfig":                cfg.Kubeconfig,
		"leader-elect":              "true",
		"profiling":                 "false",
		"secure-port":               "10259",
	}
	if cfg.ServingCert != "" {
		defaults["tls-cert-file"] = cfg.ServingCert
		defaults["tls-private-key-file"] = cfg.ServingKey
	}
	return args.Render(defaults, cfg.ExtraArgs, "--kube-scheduler-arg")
}

// The client limits of kedge's own scheduler. It talks to the apiserver of
// its own process over loopback; upstream's defaults (50 QPS, burst 100,
// sized for a scheduler on another machine) cap binding at ~50 pods/s,
// one POST per pod. Priority-and-fairness still bounds its share of the
// apiserver (its FlowSchema kube-scheduler, priority level workload-high),
// and every other client keeps its own limits. A --kube-scheduler-arg
// kube-api-qps=… or kube-api-burst=… overrides them, and so does a
// --config file (upstream ignores the flags then). See docs/scale.md.
const (
	InProcessQPS   = "500"
	InProcessBurst = "1000"
)

// InProcessArgs are the flags Start runs the scheduler with: Args with the
// in-process client limits first (a user's value, later, wins).
func InProcessArgs(cfg Config) ([]string, error) {
	flags, err := Args(cfg)
	if err != nil {
		return nil, err
	}
	return append([]string{"--kube-api-qps=" + InProcessQPS, "--kube-api-burst=" + InProcessBurst}, flags...), nil
}

// Start builds the scheduler and runs it in the background, under leader
// election unless leader-elect=false.
func (s *Scheduler) Start(ctx context.Context) error {
	flags, err := InProcessArgs(s.cfg)
	if err != nil {
		return err
	}
	opts := options.NewOptions()
	fs := pflag.NewFlagSet("kube-scheduler", pflag.ContinueOnError)
	for _, f := range opts.Flags.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(flags); err != nil {
		return fmt.Errorf("--kube-scheduler-arg: %w", err)
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("feature gates: %w", err)
	}
	ctx, log := logging.WithComponent(s.Context(ctx), s.cfg.Log, "scheduler")
	// As the upstream command does (since 1.37): the shared informers'
	// name in client-go's informer metrics, reserved process-wide until
	// the scheduler stops.
	name, err := cache.NewInformerName("kube-scheduler")
	if err != nil {
		return errors.Join(err, s.Stop(ctx))
	}
	context.AfterFunc(ctx, name.Release)
	opts.InformerName = name
	cc, sched, err := app.Setup(ctx, opts)
	if err != nil {
		return errors.Join(fmt.Errorf("--kube-scheduler-arg: %w", err), s.Stop(ctx))
	}
	election := cc.LeaderElection
	// Upstream exits the process when its election ends; kedge elects instead.
	cc.LeaderElection = nil
	cc.ComponentConfig.LeaderElection.LeaderElect = false
	if election == nil {
		s.Go(func(context.Context) error { return app.Run(ctx, cc, sched) })
		return nil
	}
	s.Go(func(context.Context) error {
		err := leader.Run(ctx, *election, log, func(ctx context.Context) error { return app.Run(ctx, cc, sched) })
		return leader.AfterLost(ctx, log, err, leader.APIReady(s.cfg.Kubeconfig))
	})
	return nil
}

// Ready returns at once: a scheduler that is not the leader is healthy too.
func (*Scheduler) Ready(context.Context) error { return nil }
