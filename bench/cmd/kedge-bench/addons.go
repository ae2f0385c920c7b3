package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/kedge-io/kedge/bench"
)

// kedgeServer is the single-node kedge server of the server runs, with the
// test image to import and extra flags (e.g. --disable servicelb).
func kedgeServer(runBin, image, dir string, w io.Writer, extra ...string) *bench.Kedge {
	return bench.NewKedge(bench.KedgeConfig{Bin: runBin, Dir: dir, Role: "server", Images: []string{image},
		Args: append([]string{"--node-name", "bench"}, extra...), Log: w})
}

// agentNodeName is the node name of the kedge agent in the agent runs.
const agentNodeName = "bench-node"

// controlPlane is the kedge server without a node that the agent runs join
// (extra: e.g. --disable servicelb, which the agent learns at join).
func controlPlane(serverBin, work string, w io.Writer, extra ...string) *bench.Kedge {
	return bench.NewKedge(bench.KedgeConfig{Bin: serverBin, Dir: filepath.Join(work, "control-plane"), Role: "server",
		Args: append([]string{"--disable-agent"}, extra...), Log: w})
}

// kedgeAgent makes the kedge agent of the agent runs, joining server.
func kedgeAgent(runBin, work string, w io.Writer, server *bench.Kedge) bench.NodeFactory {
	return func(url, token string) bench.Setup {
		return bench.NewKedge(bench.KedgeConfig{Bin: runBin, Dir: filepath.Join(work, "agent"), Role: "agent",
			Args: []string{"--server", url, "--token", token, "--node-name", agentNodeName}, AdminKC: server.Kubeconfig(), Log: w})
	}
}

// AddonOrder is the order in which run (1, 2, …) of the addons part takes
// its n samples: 0, 1, …, n-1 rotated by run-1. kedge's idle RSS drifts
// down over consecutive starts by a few MiB (the first sample of a run
// was the highest in 3 of 4 series), so a fixed order would put that
// drift into every difference with the reference; rotated, each sample
// takes each place once every n runs.
func AddonOrder(run, n int) []int {
	out := make([]int, n)
	for k := range out {
		out[k] = (k + run - 1) % n
	}
	return out
}

// runAddons is the addons part: the idle memory each built-in add-on adds
// to kedge (the baseline has none), -addons-runs times, for each role of
// -addons-roles. Each run starts kedge once with every add-on (the run's
// reference) and once per add-on with that add-on disabled, one after the
// other in AddonOrder's rotation, and takes the idle sample as the server (or agent) runs do; a row
// is the median over the runs of reference minus sample. The reference is
// taken in the same run, not borrowed from the idle part: kedge's idle RSS
// drifts by a few MiB over the half hour between them, which a single
// add-on's cost does not exceed. An agent learns --disable from its server
// at join: its runs disable the add-on on the control plane it joins
// (metrics-server runs on servers only, so its agent row is the noise).
func runAddons(ctx context.Context, o options, runBin, serverBin, image string, res *bench.Results) error {
	plan := o.plan
	plan.IdleBefore = o.idle
	for i := 1; i <= o.addonRuns; i++ {
		for _, role := range o.addonRoles {
			// sample runs kedge of role with extra flags; what names the run.
			sample := func(what, logName string, extra ...string) (u bench.Usage, err error) {
				err = withLog(o.work, fmt.Sprintf("kedge-addons-%s-%s-%d.log", role, logName, i), func(w io.Writer) error {
					plan.Log.Info("add-ons run", "role", role, "kedge", what, "run", i, "of", o.addonRuns)
					if role == bench.AddonAgent {
						server := controlPlane(serverBin, o.work, w, extra...)
						_, _, u, err = bench.JoinIdle(ctx, server, kedgeAgent(runBin, o.work, w, server), agentNodeName, plan)
						return err
					}
					k := kedgeServer(runBin, image, filepath.Join(o.work, "kedge"), w, extra...)
					u, err = bench.IdleMemory(ctx, k, k.Exited(), plan, what)
					return err
				})
				if err != nil {
					return u, fmt.Errorf("add-ons run %d, %s %s: %w", i, role, what, err)
				}
				return u, nil
			}
			// Sample 0 has every add-on, sample 1+j has Addons[j] disabled;
			// run i takes them in the order AddonOrder gives.
			samples := make([]bench.Usage, 1+len(bench.Addons))
			for _, k := range AddonOrder(i, len(samples)) {
				what, logName, extra := "with every add-on", "all", []string(nil)
				if k > 0 {
					a := bench.Addons[k-1]
					what, logName, extra = "without "+a, a, []string{"--disable", a}
				}
				u, err := sample(what, logName, extra...)
				if err != nil {
					return err
				}
				samples[k] = u
			}
			if err := bench.AddAddonCosts(res, role, "kedge", samples[0], samples[1:]); err != nil {
				return err
			}
		}
	}
	return nil
}
