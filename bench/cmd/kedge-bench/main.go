// Command kedge-bench runs the benchmarks of kedge against the baseline (the
// same upstream components as separate processes, package bench/baseline)
// and prints one Markdown table: metric, kedge, baseline, ratio. The setups
// run alternately, each run on a fresh data dir; a figure is the median
// (min–max) over the runs. It runs real clusters on this host: root only,
// one at a time (`make bench` holds nothing else on the host).
//
//	kedge-bench -kedge bin/kedge -baseline-bin bench/bin -runs 3
//	kedge-bench -quick -baseline=false -only start,idle   # development
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kedge-io/kedge/bench"
	"github.com/kedge-io/kedge/pkg/images/ociimage"
)

// imageName is the test image the pods run (tests/testimage/webapp).
const imageName = "kedge.local/webapp:test"

// options are the command line.
type options struct {
	kedgeBin    string
	baselineBin string
	baseline    bool
	repo        string
	work        string
	out         string
	runs        int
	addonRuns   int               // runs of the addons part: one kedge start per add-on each
	addonRoles  []bench.AddonRole // where the addons part measures: server, agent
	quick       bool
	idle        time.Duration // settle time before a memory sample (also for the agent runs)
	only        map[string]bool
	plan        bench.Plan
	scale       bench.ScaleConfig // -only scale
	kedgeArgs   []string          // -kedge-arg: more flags for the kedge server of the server runs
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "kedge-bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "kedge-bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("kedge-bench", flag.ContinueOnError)
	fs.StringVar(&o.kedgeBin, "kedge", "bin/kedge", "the kedge binary")
	fs.StringVar(&o.baselineBin, "baseline-bin", "bench/bin", "the baseline's upstream binaries (scripts/bench-build.sh)")
	fs.BoolVar(&o.baseline, "baseline", true, "run the baseline; false leaves its column empty (development only)")
	fs.StringVar(&o.repo, "repo", ".", "the kedge source tree (the test image is built from tests/testimage/webapp)")
	fs.StringVar(&o.work, "work", "/var/tmp/kedge-bench", "working directory (data dirs, logs); emptied first")
	fs.StringVar(&o.out, "out", "", "also write the table (with the machine) to this file")
	fs.IntVar(&o.runs, "runs", 3, "runs of each setup")
	fs.IntVar(&o.addonRuns, "addons-runs", 3, "runs of the addons part (each: per role, one kedge start with every add-on and one per add-on, ~70 s each)")
	roles := fs.String("addons-roles", "server,agent", "where the addons part measures: server (single node), agent (joined to a server without a node)")
	fs.BoolVar(&o.quick, "quick", false, "development: 1 run, 10 s + 20 s idle, 200 creates, 5 replicas")
	fs.Func("kedge-arg", "a flag for the kedge server of the server runs, e.g. -kedge-arg=--disable=metrics-server (repeatable; the table's header lists them)", func(v string) error {
		o.kedgeArgs = append(o.kedgeArgs, v)
		return nil
	})
	only := fs.String("only", "", "comma-separated parts to run: start,idle,api,churn,size,agent,restart,addons (default all), scale (only if named)")
	scaleDone := scaleFlags(fs, &o)
	fs.DurationVar(&o.plan.IdleBefore, "idle", 60*time.Second, "settle time from the first pod Running to the memory sample")
	fs.DurationVar(&o.plan.IdleCPU, "idle-cpu", 120*time.Second, "window over which idle CPU is summed")
	fs.IntVar(&o.plan.Load.Creates, "creates", 2000, "ConfigMap creates")
	fs.IntVar(&o.plan.Load.Clients, "clients", 16, "concurrent clients of the creates")
	fs.IntVar(&o.plan.Load.Lists, "lists", 200, "LISTs after the creates")
	replicas := fs.Int("replicas", 100, "replicas of the churn Deployment (the node's max-pods is 110)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		quick := map[string]func(){
			"runs":        func() { o.runs = 1 },
			"addons-runs": func() { o.addonRuns = 1 },
			"idle":        func() { o.plan.IdleBefore = 10 * time.Second },
			"idle-cpu":    func() { o.plan.IdleCPU = 20 * time.Second },
			"creates":     func() { o.plan.Load.Creates = 200 },
			"lists":       func() { o.plan.Load.Lists = 20 },
			"replicas":    func() { *replicas = 5 },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	if err := scaleDone(o.quick, set); err != nil {
		return o, err
	}
	o.only = map[string]bool{}
	for _, part := range strings.Split(*only, ",") {
		switch part = strings.TrimSpace(part); part {
		case "":
		case "start", "idle", "api", "churn", "size", "agent", "restart", "addons", "scale":
			o.only[part] = true
		default:
			return o, fmt.Errorf("-only: unknown part %q (start, idle, api, churn, size, agent, restart, addons, scale)", part)
		}
	}
	if len(o.only) == 0 {
		for _, p := range []string{"start", "idle", "api", "churn", "size", "agent", "restart", "addons"} {
			o.only[p] = true
		}
	}
	if o.runs < 1 {
		return o, errors.New("-runs must be at least 1")
	}
	if o.addonRuns < 1 {
		return o, errors.New("-addons-runs must be at least 1")
	}
	for _, r := range strings.Split(*roles, ",") {
		role := bench.AddonRole(strings.TrimSpace(r))
		if !slices.Contains(bench.AddonRoles, role) {
			return o, fmt.Errorf("-addons-roles: unknown role %q (server, agent)", r)
		}
		if !slices.Contains(o.addonRoles, role) {
			o.addonRoles = append(o.addonRoles, role)
		}
	}
	o.idle = o.plan.IdleBefore
	if !o.only["idle"] {
		o.plan.IdleBefore, o.plan.IdleCPU = 0, 0
	}
	if !o.only["api"] {
		o.plan.Load.Creates = 0
	}
	o.plan.Load.Namespace = "bench-api"
	o.plan.Load.DataBytes = 64
	o.plan.Churn = bench.ChurnConfig{Namespace: "default", Name: "churn", Image: imageName}
	if o.only["churn"] {
		o.plan.Churn.Replicas = int32(*replicas)
	}
	o.plan.Image = imageName
	return o, nil
}

func run(ctx context.Context, o options) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("runs clusters on this host: run as root")
	}
	// Absolute paths: the setups exec from their own directories.
	for _, p := range []*string{&o.kedgeBin, &o.baselineBin, &o.repo, &o.work} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	kedgeBin := o.kedgeBin
	if _, err := os.Stat(kedgeBin); err != nil {
		return fmt.Errorf("-kedge: %w (make build)", err)
	}
	var base *baselineSet
	if o.baseline {
		if base, err = newBaselineSet(o.repo, o.baselineBin); err != nil {
			return fmt.Errorf("baseline: %w (scripts/bench-build.sh builds it; -baseline=false skips it, for development only)", err)
		}
	}
	if err := os.RemoveAll(o.work); err != nil {
		return err
	}
	if err := os.MkdirAll(o.work, 0o755); err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(o.work, "kedge-bench.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(io.MultiWriter(os.Stderr, logFile), nil))
	o.plan.Log = log

	// kedge runs from a private copy of the binary, and the control plane
	// the nodes join from another: a process shares the page cache of its
	// executable with every other process running the same file (another
	// kedge on the host, a test), which would lower its PSS below what it
	// is on a host of its own. Both keep the name kedge (multicall, killall).
	runBin, serverBin := filepath.Join(o.work, "bin", "kedge"), filepath.Join(o.work, "control-plane-bin", "kedge")
	for _, dst := range []string{runBin, serverBin} {
		if err := copyExecutable(kedgeBin, dst); err != nil {
			return err
		}
	}
	image, err := buildImage(ctx, o.repo, o.work)
	if err != nil {
		return err
	}
	var res bench.Results
	declareRows(&res, o)
	if o.only["size"] {
		log.Info("download sizes (gzip -9, zstd -19)")
		if err := measureSizes(ctx, log, &res, "kedge", []string{kedgeBin}); err != nil {
			return err
		}
		if base != nil {
			if err := measureSizes(ctx, log, &res, "baseline", base.download); err != nil {
				return err
			}
		}
	}
	// Kedge first, then the baseline, alternating: a drift of the host
	// (page cache, thermal, a neighbour) spreads over both.
	type setup struct {
		name   string
		server func(dir string, w io.Writer) (bench.Setup, <-chan struct{})
		node   bench.NodeFactory
	}
	setups := []setup{{
		name: "kedge",
		server: func(dir string, w io.Writer) (bench.Setup, <-chan struct{}) {
			k := kedgeServer(runBin, image, dir, w, o.kedgeArgs...)
			return k, k.Exited()
		},
	}}
	if base != nil {
		setups = append(setups, setup{name: "baseline", server: base.server(image)})
	}
	serverParts := o.only["start"] || o.only["idle"] || o.only["api"] || o.only["churn"]
	// On a failure, what was measured so far still goes to stderr.
	defer func() {
		if err != nil {
			fmt.Fprintf(os.Stderr, "partial results:\n%s", res.Table([2]string{"kedge", "baseline"}))
		}
	}()
	for i := 1; i <= o.runs && serverParts; i++ {
		for _, s := range setups {
			if err := withLog(o.work, fmt.Sprintf("%s-server-%d.log", s.name, i), func(w io.Writer) error {
				log.Info("server run", "setup", s.name, "run", i, "of", o.runs)
				setup, exited := s.server(filepath.Join(o.work, s.name), w)
				return bench.RunServer(ctx, setup, exited, o.plan, &res)
			}); err != nil {
				return fmt.Errorf("%s run %d: %w", s.name, i, err)
			}
		}
	}
	for i := 1; i <= o.runs && o.only["agent"]; i++ {
		for _, s := range setups {
			if err := withLog(o.work, fmt.Sprintf("%s-node-%d.log", s.name, i), func(w io.Writer) error {
				log.Info("agent run", "setup", s.name, "run", i, "of", o.runs)
				server := controlPlane(serverBin, o.work, w)
				var node bench.NodeFactory
				switch s.name {
				case "kedge":
					node = kedgeAgent(runBin, o.work, w, server)
				default:
					node = base.node(filepath.Join(o.work, "baseline-node"), server, w)
				}
				plan := o.plan
				plan.IdleBefore = o.idle
				return bench.RunNode(ctx, server, node, agentNodeName, plan, &res)
			}); err != nil {
				return fmt.Errorf("%s agent run %d: %w", s.name, i, err)
			}
		}
	}
	for i := 1; i <= o.runs && o.only["restart"]; i++ { // kedge only: the baseline has no restart row
		if err := withLog(o.work, fmt.Sprintf("kedge-restart-%d.log", i), func(w io.Writer) error {
			log.Info("restart run", "run", i, "of", o.runs)
			k := kedgeServer(runBin, image, filepath.Join(o.work, "kedge"), w)
			return bench.RunRestart(ctx, k, o.plan, &res)
		}); err != nil {
			return fmt.Errorf("kedge restart run %d: %w", i, err)
		}
	}
	for i := 1; i <= o.runs && o.only["scale"]; i++ {
		for _, s := range setups {
			if err := runScale(ctx, o, s.name, i, s.server, &res); err != nil {
				return fmt.Errorf("%s scale run %d: %w", s.name, i, err)
			}
		}
	}
	if o.only["addons"] {
		if err := runAddons(ctx, o, runBin, serverBin, image, &res); err != nil {
			return err
		}
	}
	table := res.Table([2]string{"kedge", "baseline"})
	header := machine(ctx, kedgeBin, o)
	if len(o.kedgeArgs) > 0 {
		header += fmt.Sprintf("The kedge server of the server runs had the flags %q.\n", o.kedgeArgs)
	}
	report := header + "\n" + table
	fmt.Print(report)
	if o.out != "" {
		return os.WriteFile(o.out, []byte(report), 0o644)
	}
	return nil
}

// declareRows fixes the order of the rows (that of the issue) and says
// why a cell stays empty.
func declareRows(r *bench.Results, o options) {
	n := o.plan.Churn.Replicas
	parts := []struct {
		part    string
		metrics []bench.Metric
	}{
		{"start", []bench.Metric{bench.MetricAPIReady, bench.MetricNodeReady, bench.MetricPodRunning}},
		{"idle", []bench.Metric{bench.MetricProcs, bench.MetricRSS, bench.MetricPSS, bench.MetricAnon, bench.MetricDirty, bench.MetricHeap, bench.MetricIdleCPU}},
		{"api", append([]bench.Metric{bench.MetricCreateRate(o.plan.Load), bench.MetricCreateP50, bench.MetricCreateP99, bench.MetricListP50, bench.MetricListP99},
			bench.LoadMemoryRows.Metrics()...)},
		{"churn", append([]bench.Metric{bench.MetricChurnUp(n), bench.MetricChurnDown(n), bench.MetricChurnUpRate(n), bench.MetricChurnDownRate(n)},
			append(bench.ChurnMemoryRows(n).Metrics(), bench.MetricPerPodRSS(n), bench.MetricPerPodPSS(n), bench.MetricPerPodAnon(n))...)},
		{"size", []bench.Metric{bench.MetricSize, bench.MetricGzip, bench.MetricZstd, bench.MetricZstdMB}},
		{"agent", []bench.Metric{bench.MetricJoin, bench.MetricNodeProcs, bench.MetricNodeRSS, bench.MetricNodePSS, bench.MetricNodeAnon, bench.MetricNodeDirty}},
		{"addons", addonMetrics(o)},
		{"restart", []bench.Metric{bench.MetricRestartAPI, bench.MetricRestartNode}},
		{"scale", bench.ScaleMetrics(o.scale.Steps)},
	}
	serverParts := o.only["start"] || o.only["idle"] || o.only["api"] || o.only["churn"]
	for _, p := range parts {
		// The start rows come with every server run.
		if o.only[p.part] || (p.part == "start" && serverParts) {
			for _, m := range p.metrics {
				r.Declare(m, "")
			}
		}
	}
	if o.only["idle"] {
		r.Declare(bench.MetricHeap, "n/a (one per process)")
	}
	if o.only["restart"] {
		r.Declare(bench.MetricRestartAPI, "n/a (kedge only)")
		r.Declare(bench.MetricRestartNode, "n/a (kedge only)")
	}
	if o.only["addons"] {
		for _, m := range addonMetrics(o) {
			r.Declare(m, "n/a (no add-ons)")
		}
	}
}

// addonMetrics are the addons part's rows for the roles it measures.
func addonMetrics(o options) []bench.Metric {
	var out []bench.Metric
	for _, role := range o.addonRoles {
		out = append(out, bench.AddonMetrics(role)...)
	}
	return out
}

func measureSizes(ctx context.Context, log *slog.Logger, r *bench.Results, name string, files []string) error {
	s, err := bench.DownloadSize(ctx, files)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	log.Info("download", "setup", name, "files", len(files), "bytes", s.Raw, "gzip", s.Gzip, "zstd", s.Zstd)
	r.Add(bench.MetricSize, name, float64(s.Raw)/(1<<20))
	r.Add(bench.MetricGzip, name, float64(s.Gzip)/(1<<20))
	r.Add(bench.MetricZstd, name, float64(s.Zstd)/(1<<20))
	r.Add(bench.MetricZstdMB, name, float64(s.Zstd)/1e6)
	return nil
}

// withLog runs f with the log file work/name as its setups' output.
func withLog(work, name string, f func(io.Writer) error) error {
	w, err := os.Create(filepath.Join(work, name))
	if err != nil {
		return err
	}
	defer w.Close()
	if err := f(w); err != nil {
		return fmt.Errorf("%w (log: %s)", err, w.Name())
	}
	return nil
}

func copyExecutable(src, dst string) error {
	raw, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, raw, 0o755)
}

// buildImage builds the webapp test image tarball into work/images.
func buildImage(ctx context.Context, repo, work string) (string, error) {
	bin := filepath.Join(work, "webapp")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./tests/testimage/webapp")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the test image: %w\n%s", err, out)
	}
	raw, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(work, "images"), 0o755); err != nil {
		return "", err
	}
	tarball := filepath.Join(work, "images", "webapp.tar")
	f, err := os.Create(tarball)
	if err != nil {
		return "", err
	}
	if err := ociimage.Build(raw, "/webapp", imageName, f); err != nil {
		f.Close()
		return "", err
	}
	return tarball, f.Close()
}

// machine describes the host and the run for the README.
func machine(ctx context.Context, kedgeBin string, o options) string {
	cpu := "?"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "?"
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(raw), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	version, _ := exec.CommandContext(ctx, kedgeBin, "--version").Output()
	return fmt.Sprintf("%s, %d runs each (alternating); memory sampled %s after the first pod runs (agent: after node Ready), CPU summed over the next %s; %s.\nMachine: %s, %d CPUs, %s RAM, Linux %s.\n",
		strings.TrimSpace(string(version)), o.runs, o.idle, o.plan.IdleCPU, time.Now().UTC().Format("2006-01-02"),
		cpu, runtime.NumCPU(), mem, strings.TrimSpace(string(kernel)))
}
