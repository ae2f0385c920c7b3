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

// runAddons is the addons part: the idle memory each built-in add-on adds
// to kedge (the baseline has none), -addons-runs times. Each run starts
// kedge once per add-on with that add-on disabled and takes the idle sample
// as the server runs do; the reference of run i is the idle sample of kedge
// server run i (idle, when the idle part ran and has that many runs), or
// else one more start with every add-on.
func runAddons(ctx context.Context, o options, runBin, image string, idle []bench.Usage, res *bench.Results) error {
	plan := o.plan
	plan.IdleBefore = o.idle
	dir := filepath.Join(o.work, "kedge")
	for i := 1; i <= o.addonRuns; i++ {
		// sample runs kedge with extra flags; what names the run.
		sample := func(what, logName string, extra ...string) (u bench.Usage, err error) {
			err = withLog(o.work, fmt.Sprintf("kedge-addons-%s-%d.log", logName, i), func(w io.Writer) error {
				plan.Log.Info("add-ons run", "kedge", what, "run", i, "of", o.addonRuns)
				k := kedgeServer(runBin, image, dir, w, extra...)
				u, err = bench.IdleMemory(ctx, k, k.Exited(), plan, what)
				return err
			})
			if err != nil {
				return u, fmt.Errorf("add-ons run %d, %s: %w", i, what, err)
			}
			return u, nil
		}
		var ref bench.Usage
		if i <= len(idle) {
			ref = idle[i-1]
		} else {
			var err error
			if ref, err = sample("with every add-on", "all"); err != nil {
				return err
			}
		}
		var without []bench.Usage
		for _, a := range bench.Addons {
			u, err := sample("without "+a, a, "--disable", a)
			if err != nil {
				return err
			}
			without = append(without, u)
		}
		if err := bench.AddAddonCosts(res, "kedge", ref, without); err != nil {
			return err
		}
	}
	return nil
}
