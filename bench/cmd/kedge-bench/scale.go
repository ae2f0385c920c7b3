package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kedge-io/kedge/bench"
)

// defaultScaleSteps are the sizes: 100 fake nodes with 0, 1k and
// 3k pods, then 500 nodes with 10k pods.
const (
	defaultScaleSteps = "100:0,100:1000,100:3000,500:10000"
	quickScaleSteps   = "10:0,10:100,10:300,20:600"
)

// scaleFlags registers the flags of the scale part (-only scale; not in
// the default set: it runs ~10 min per setup) into fs; the returned
// function completes o.scale after parsing.
func scaleFlags(fs *flag.FlagSet, o *options) func(quick bool, set map[string]bool) error {
	steps := fs.String("scale-steps", defaultScaleSteps, "scale part: comma-separated NODES:PODS steps (growing) of kwok fake nodes and pods")
	fs.DurationVar(&o.scale.Settle, "scale-settle", 15*time.Second, "scale part: wait from all pods Running to the memory sample")
	fs.IntVar(&o.scale.Lists, "scale-lists", 10, "scale part: LISTs of all pods at each step")
	return func(quick bool, set map[string]bool) error {
		if quick && !set["scale-steps"] {
			*steps = quickScaleSteps
		}
		if quick && !set["scale-settle"] {
			o.scale.Settle = 5 * time.Second
		}
		var err error
		if o.scale.Steps, err = parseScaleSteps(*steps); err != nil {
			return fmt.Errorf("-scale-steps: %w", err)
		}
		o.scale.Clients = o.plan.Load.Clients
		o.scale.StepTimeout = 10 * time.Minute
		return nil
	}
}

// parseScaleSteps parses "100:0,100:1000": each step at least as large as
// the one before, with at least one fake node.
func parseScaleSteps(s string) ([]bench.ScaleStep, error) {
	var steps []bench.ScaleStep
	for _, part := range strings.Split(s, ",") {
		n, p, ok := strings.Cut(strings.TrimSpace(part), ":")
		nodes, err1 := strconv.Atoi(n)
		pods, err2 := strconv.Atoi(p)
		if !ok || err1 != nil || err2 != nil || nodes < 1 || pods < 0 {
			return nil, fmt.Errorf("%q: want NODES:PODS, e.g. 100:3000, with NODES ≥ 1", part)
		}
		if len(steps) > 0 {
			if last := steps[len(steps)-1]; nodes < last.Nodes || pods < last.Pods || (nodes == last.Nodes && pods == last.Pods) {
				return nil, fmt.Errorf("%q: each step must grow from the one before (%d:%d)", part, last.Nodes, last.Pods)
			}
		}
		steps = append(steps, bench.ScaleStep{Nodes: nodes, Pods: pods})
	}
	return steps, nil
}

// runScale runs the scale part on the server setup name makes, with kwok
// from the baseline bin dir.
func runScale(ctx context.Context, o options, name string, run int, server func(dir string, w io.Writer) (bench.Setup, <-chan struct{}), res *bench.Results) error {
	sc := o.scale
	sc.KwokBin = filepath.Join(o.baselineBin, bench.KwokBinary)
	sc.KwokStages = filepath.Join(o.baselineBin, bench.KwokStages)
	sc.Log = o.plan.Log
	kwokLog, err := os.Create(filepath.Join(o.work, fmt.Sprintf("%s-kwok-%d.log", name, run)))
	if err != nil {
		return err
	}
	defer kwokLog.Close()
	return withLog(o.work, fmt.Sprintf("%s-scale-%d.log", name, run), func(w io.Writer) error {
		o.plan.Log.Info("scale run", "setup", name, "run", run, "of", o.runs, "steps", sc.Steps)
		dir := filepath.Join(o.work, name)
		setup, exited := server(dir, w)
		return bench.RunScale(ctx, setup, exited, dir, sc, kwokLog, res)
	})
}
