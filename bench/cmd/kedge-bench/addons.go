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

// runAddons is the addons part: the idle memory each built-in add-on adds
// to kedge (the baseline has none), -addons-runs times, for each role of
// -addons-roles. Each run starts kedge once with every add-on (the run's
// reference) and once per add-on with that add-on disabled, one after the
// other, and takes the idle sample as the server (or agent) runs do; a row
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
			ref, err := sample("with every add-on", "all")
			if err != nil {
				return err
			}
			var without []bench.Usage
			for _, a := range bench.Addons {
				u, err := sample("without "+a, a, "--disable", a)
				if err != nil {
					return err
				}
				without = append(without, u)
			}
			if err := bench.AddAddonCosts(res, role, "kedge", ref, without); err != nil {
				return err
			}
		}
	}
	return nil
}
