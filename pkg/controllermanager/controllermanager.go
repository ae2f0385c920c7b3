// Package controllermanager runs kube-controller-manager in the kedge
// process, from the upstream k8s.io/kubernetes/cmd/kube-controller-manager/app
// library, under kedge's own leader election (see package leader).
//
//	cm := controllermanager.New(controllermanager.Config{Kubeconfig: path, ClusterCIDR: "10.42.0.0/16", ...})
//	_ = cm.Start(ctx)
package controllermanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app/options"

	"github.com/kedge-io/kedge/pkg/args"
	"github.com/kedge-io/kedge/pkg/component"
	"github.com/kedge-io/kedge/pkg/leader"
	"github.com/kedge-io/kedge/pkg/logging"
	"github.com/kedge-io/kedge/pkg/pki"
)

// Config describes the controller-manager of one server node.
type Config struct {
	Kubeconfig  string // controller-manager's client kubeconfig
	ClusterCIDR string // pod CIDR the node IPAM allocates from
	ServiceCIDR string
	Certs       pki.Bundle
	ExtraArgs   []string // --kube-controller-manager-arg key=value
	// Starting, if set, is called each time the controllers start (the
	// server took the lease): their volume plugins are inited then (see
	// kubelet.CSIGuard).
	Starting func()
	Log      *slog.Logger
}

// ControllerManager is the kube-controller-manager component.
type ControllerManager struct {
	component.Background
	cfg Config
}

var _ component.Component = (*ControllerManager)(nil)
var _ component.Failer = (*ControllerManager)(nil)

// New returns a controller-manager component; nothing runs until Start.
func New(cfg Config) *ControllerManager { return &ControllerManager{cfg: cfg} }

// Name implements component.Component.
func (*ControllerManager) Name() string { return "controller-manager" }

// Args renders the kube-controller-manager flags: kedge's defaults, then the
// user's --kube-controller-manager-arg values.
func Args(cfg Config) ([]string, error) {
	c := cfg.Certs
	defaults := map[string]string{
		"allocate-node-cidrs":       "true",
		"authentication-kubeconfig": cfg.Kubeconfig,
		"authorization-kubeconfig":  cfg.Kubeconfig,
		"bind-address":              "127.0.0.1",
		"cluster-cidr":              cfg.ClusterCIDR,
		"cluster-signing-kube-apiserver-client-cert-file": c.ClientCASigning, // the signing CA alone, also during a CA rotation
		"cluster-signing-kube-apiserver-client-key-file":  c.ClientCAKey,
		"cluster-signing-kubelet-client-cert-file":        c.ClientCASigning,
		"cluster-signing-kubelet-client-key-file":         c.ClientCAKey,
		"cluster-signing-kubelet-serving-cert-file":       c.ServerCASigning,
		"cluster-signing-kubelet-serving-key-file":        c.ServerCAKey,
		"cluster-signing-legacy-unknown-cert-file":        c.ServerCASigning,
		"cluster-signing-legacy-unknown-key-file":         c.ServerCAKey,
		"configure-cloud-routes":                          "false",
		"controllers":                                     "*", // no tokencleaner: see package token; 1.37 removed the cloud-provider stubs (service, route, cloud-node-lifecycle) kedge turned off here
		"kubeconfig":                                      cfg.Kubeconfig,
		"leader-elect":                                    "true",
		"node-cidr-mask-size":                             "24",
		"profiling":                                       "false",
		"root-ca-file":                                    c.ServerCA,
		"secure-port":                                     "10257",
		"service-account-private-key-file":                c.ServiceAccountKey,
		"service-cluster-ip-range":                        cfg.ServiceCIDR,
		"use-service-account-credentials":                 "true",
	}
	// kedge's serving certificate, if the bundle has one: without it the
	// controller-manager generates a self-signed RSA pair on every start.
	if c.ControllerManagerServingCert != "" {
		defaults["tls-cert-file"] = c.ControllerManagerServingCert
		defaults["tls-private-key-file"] = c.ControllerManagerServingKey
	}
	return args.Render(defaults, cfg.ExtraArgs, "--kube-controller-manager-arg")
}

// Start builds the controller-manager configuration and runs it in the
// background, under leader election unless leader-elect=false.
func (m *ControllerManager) Start(ctx context.Context) error {
	flags, err := Args(m.cfg)
	if err != nil {
		return err
	}
	s, err := options.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	known, disabled, aliases := app.KnownControllers(), app.ControllersDisabledByDefault(), app.ControllerAliases()
	nfs := s.Flags(known, disabled, aliases)
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	for _, f := range nfs.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(flags); err != nil {
		return fmt.Errorf("--kube-controller-manager-arg: %w", err)
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("feature gates: %w", err)
	}
	ctx, log := logging.WithComponent(m.Context(ctx), m.cfg.Log, "controller-manager")
	c, err := s.Config(ctx, known, disabled, aliases)
	if err != nil {
		return errors.Join(fmt.Errorf("--kube-controller-manager-arg: %w", err), m.Stop(ctx))
	}
	le := c.ComponentConfig.Generic.LeaderElection
	// Upstream exits the process when its election ends; kedge elects instead.
	c.ComponentConfig.Generic.LeaderElection.LeaderElect = false
	early := splitEarly(c)
	completed := c.Complete()
	run := func(ctx context.Context) error {
		if m.cfg.Starting != nil {
			m.cfg.Starting()
		}
		if early == nil {
			return app.Run(ctx, completed)
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		earlyDone := make(chan error, 1)
		go func() {
			err := runAlone(ctx, early.Complete())
			if ctx.Err() == nil { // stopped by itself: stop the rest too
				err = errors.Join(errors.New("early controllers stopped"), err)
				cancel()
			}
			earlyDone <- err
		}()
		err := app.Run(ctx, completed)
		cancel()
		return errors.Join(err, <-earlyDone)
	}
	if !le.LeaderElect {
		m.Go(func(context.Context) error { return run(ctx) })
		return nil
	}
	host, _ := os.Hostname()
	lock, err := resourcelock.NewFromKubeconfig(le.ResourceLock, le.ResourceNamespace, le.ResourceName,
		resourcelock.ResourceLockConfig{Identity: host + "_" + string(uuid.NewUUID()), EventRecorder: c.EventRecorder},
		c.Kubeconfig, le.RenewDeadline.Duration)
	if err != nil {
		return errors.Join(fmt.Errorf("leader election lock: %w", err), m.Stop(ctx))
	}
	election := leaderelection.LeaderElectionConfig{
		Lock:          lock,
		LeaseDuration: le.LeaseDuration.Duration,
		RenewDeadline: le.RenewDeadline.Duration,
		RetryPeriod:   le.RetryPeriod.Duration,
		Name:          le.ResourceName,
	}
	m.Go(func(context.Context) error {
		err := leader.Run(ctx, election, log, run)
		return leader.AfterLost(ctx, log, err, leader.APIReady(m.cfg.Kubeconfig))
	})
	return nil
}

// Ready returns at once: a controller-manager that is not the leader is
// healthy too, and the manager must not wait for an election.
func (*ControllerManager) Ready(context.Context) error { return nil }
