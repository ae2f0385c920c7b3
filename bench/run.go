package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/kubernetes"
)

// The rows of the table, in order.
var (
	MetricAPIReady   = Metric{Name: "exec → API ready (/readyz ok)", Unit: "s", Decimals: 2}
	MetricNodeReady  = Metric{Name: "exec → node Ready", Unit: "s", Decimals: 2}
	MetricPodRunning = Metric{Name: "exec → first pod Running", Unit: "s", Decimals: 2}
	MetricProcs      = Metric{Name: "processes at idle (shims included)", Decimals: 0}
	MetricRSS        = Metric{Name: "idle memory: RSS sum", Unit: "MiB", Decimals: 0}
	MetricPSS        = Metric{Name: "idle memory: PSS sum", Unit: "MiB", Decimals: 0}
	MetricHeap       = Metric{Name: "idle Go heap in use (kedge: whole process)", Unit: "MiB", Decimals: 0}
	MetricIdleCPU    = Metric{Name: "CPU during idle", Unit: "s", Decimals: 2}
	MetricCreateP50  = Metric{Name: "ConfigMap create latency p50", Unit: "ms", Decimals: 1}
	MetricCreateP99  = Metric{Name: "ConfigMap create latency p99", Unit: "ms", Decimals: 1}
	MetricListP50    = Metric{Name: "LIST of them latency p50", Unit: "ms", Decimals: 1}
	MetricListP99    = Metric{Name: "LIST of them latency p99", Unit: "ms", Decimals: 1}
	MetricSize       = Metric{Name: "download: binaries", Unit: "MiB", Decimals: 1}
	MetricGzip       = Metric{Name: "download: gzip -9", Unit: "MiB", Decimals: 1}
	MetricZstd       = Metric{Name: "download: zstd -19", Unit: "MiB", Decimals: 1}
	MetricZstdMB     = Metric{Name: "download: zstd -19, in MB (10^6 bytes)", Unit: "MB", Decimals: 1}
	MetricNodeRSS    = Metric{Name: "agent alone: idle RSS sum", Unit: "MiB", Decimals: 0}
	MetricNodePSS    = Metric{Name: "agent alone: idle PSS sum", Unit: "MiB", Decimals: 0}
	MetricNodeProcs  = Metric{Name: "agent alone: processes", Decimals: 0}
	MetricJoin       = Metric{Name: "agent alone: join → node Ready", Unit: "s", Decimals: 2}
)

// MetricCreateRate is the create throughput row for a load of lc.
func MetricCreateRate(lc LoadConfig) Metric {
	return Metric{Name: fmt.Sprintf("%d ConfigMap creates, %d clients: throughput", lc.Creates, lc.Clients), Unit: "/s", Decimals: 0}
}

// MetricChurnUp is the scale-up row of a churn to n replicas.
func MetricChurnUp(n int32) Metric {
	return Metric{Name: fmt.Sprintf("Deployment 0 → %d: all Running", n), Unit: "s", Decimals: 2}
}

// MetricChurnDown is the scale-down row of a churn from n replicas.
func MetricChurnDown(n int32) Metric {
	return Metric{Name: fmt.Sprintf("Deployment %d → 0: all gone", n), Unit: "s", Decimals: 2}
}

// HeapReporter is a Setup whose Go heap can be read as one figure (kedge:
// one process, its apiserver's /metrics covers every component).
type HeapReporter interface {
	HeapInuse(ctx context.Context) (float64, error)
}

// HeapInuse reads the Go heap in use of the kedge server process.
func (k *Kedge) HeapInuse(ctx context.Context) (float64, error) {
	return HeapInuse(ctx, k.Kubeconfig())
}

// Plan says what a run measures and for how long.
type Plan struct {
	Image      string        // the test image, present on the node (imported from the airgap dir)
	IdleBefore time.Duration // settle time from the first pod Running to the memory sample (60 s)
	IdleCPU    time.Duration // CPU is summed over this window, right after (120 s)
	Load       LoadConfig    // Creates == 0 skips the API load
	Churn      ChurnConfig   // Replicas == 0 skips the churn
	Log        *slog.Logger
}

const mib = 1 << 20

// RunServer starts a single-node cluster, measures it and stops it,
// adding one value per metric for s.Name() to r.
func RunServer(ctx context.Context, s Setup, exited <-chan struct{}, p Plan, r *Results) (err error) {
	log := p.Log.With("setup", s.Name())
	stop, err := start(ctx, log, s, s.Name())
	if err != nil {
		return err
	}
	defer stop(&err)
	st, err := WaitStart(ctx, s, StartWait{PodImage: p.Image, Exited: exited})
	if err != nil {
		return err
	}
	log.Info("up", "api", st.APIReady, "node", st.NodeReady, "pod", st.PodRunning)
	r.Add(MetricAPIReady, s.Name(), st.APIReady.Seconds())
	r.Add(MetricNodeReady, s.Name(), st.NodeReady.Seconds())
	r.Add(MetricPodRunning, s.Name(), st.PodRunning.Seconds())

	if p.IdleBefore > 0 || p.IdleCPU > 0 {
		if err := measureIdle(ctx, s, p, r, log); err != nil {
			return err
		}
	}
	cfg, err := RESTConfig(s.Kubeconfig())
	if err != nil {
		return err
	}
	if p.Load.Creates > 0 {
		lr, err := APILoad(ctx, cfg, p.Load)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name(), err)
		}
		log.Info("api load", "creates/s", int(lr.Throughput()), "p99", Percentile(lr.Creates, 99), "list p99", Percentile(lr.Lists, 99), "listed", lr.ListedObjects, "retried", lr.Retried)
		r.Add(MetricCreateRate(p.Load), s.Name(), lr.Throughput())
		r.Add(MetricCreateP50, s.Name(), ms(Percentile(lr.Creates, 50)))
		r.Add(MetricCreateP99, s.Name(), ms(Percentile(lr.Creates, 99)))
		r.Add(MetricListP50, s.Name(), ms(Percentile(lr.Lists, 50)))
		r.Add(MetricListP99, s.Name(), ms(Percentile(lr.Lists, 99)))
		u, err := SampleMemory(s)
		if err != nil {
			return err
		}
		LoadMemoryRows.Add(r, s.Name(), u, log, "memory after the api load")
	}
	if p.Churn.Replicas > 0 {
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		// Per-pod memory: the sample with all pods running against one
		// just before the scale-up.
		before, err := SampleMemory(s)
		if err != nil {
			return err
		}
		var peak Usage
		c, n := p.Churn, p.Churn.Replicas
		c.AtPeak = func(context.Context) (err error) { peak, err = SampleMemory(s); return err }
		cr, err := Churn(ctx, cs, c)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name(), err)
		}
		log.Info("churn", "up", cr.Up, "down", cr.Down)
		r.Add(MetricChurnUp(n), s.Name(), cr.Up.Seconds())
		r.Add(MetricChurnDown(n), s.Name(), cr.Down.Seconds())
		r.Add(MetricChurnUpRate(n), s.Name(), PerMinute(n, cr.Up.Seconds()))
		r.Add(MetricChurnDownRate(n), s.Name(), PerMinute(n, cr.Down.Seconds()))
		ChurnMemoryRows(n).Add(r, s.Name(), peak, log, "memory with the churn's pods running")
		r.Add(MetricPerPodRSS(n), s.Name(), perPod(before.RSS, peak.RSS, n))
		r.Add(MetricPerPodPSS(n), s.Name(), perPod(before.PSS, peak.PSS, n))
		r.Add(MetricPerPodAnon(n), s.Name(), perPod(before.Anon, peak.Anon, n))
	}
	return nil
}

// measureIdle waits IdleBefore, samples memory (and kedge's heap), then
// sums the CPU time over IdleCPU.
func measureIdle(ctx context.Context, s Setup, p Plan, r *Results, log *slog.Logger) error {
	procfs := ProcFS{Root: "/proc"}
	if err := sleep(ctx, p.IdleBefore); err != nil {
		return err
	}
	pids, err := s.PIDs()
	if err != nil {
		return fmt.Errorf("%s: pids: %w", s.Name(), err)
	}
	u, before, err := procfs.Measure(pids)
	if err != nil {
		return fmt.Errorf("%s: %w", s.Name(), err)
	}
	log.Info("idle memory", "procs", u.Procs, "rss_mib", u.RSS/mib, "pss_mib", u.PSS/mib, "anon_mib", u.Anon/mib, "private_dirty_mib", u.PrivateDirty/mib)
	r.Add(MetricProcs, s.Name(), float64(u.Procs))
	r.Add(MetricRSS, s.Name(), float64(u.RSS)/mib)
	r.Add(MetricPSS, s.Name(), float64(u.PSS)/mib)
	r.Add(MetricAnon, s.Name(), float64(u.Anon)/mib)
	r.Add(MetricDirty, s.Name(), float64(u.PrivateDirty)/mib)
	if h, ok := s.(HeapReporter); ok {
		heap, err := h.HeapInuse(ctx)
		if err != nil {
			return fmt.Errorf("%s: heap: %w", s.Name(), err)
		}
		r.Add(MetricHeap, s.Name(), heap/mib)
	}
	if p.IdleCPU <= 0 {
		return nil
	}
	if err := sleep(ctx, p.IdleCPU); err != nil {
		return err
	}
	if pids, err = s.PIDs(); err != nil {
		return fmt.Errorf("%s: pids: %w", s.Name(), err)
	}
	_, after, err := procfs.Measure(pids)
	if err != nil {
		return fmt.Errorf("%s: %w", s.Name(), err)
	}
	cpu := CPUDelta(before, after)
	log.Info("idle cpu", "seconds", cpu, "window", p.IdleCPU)
	r.Add(MetricIdleCPU, s.Name(), cpu)
	return nil
}

// NodeFactory makes the node Setup that joins server URL with token.
type NodeFactory func(serverURL, token string) Setup

// RunNode starts server (a control plane without a node, e.g. `kedge
// server --disable-agent`), then the node setup joining it; it measures
// join → node Ready and the node's idle memory, and stops both.
func RunNode(ctx context.Context, server *Kedge, node NodeFactory, nodeName string, p Plan, r *Results) error {
	n, st, u, err := JoinIdle(ctx, server, node, nodeName, p)
	if err != nil {
		return err
	}
	r.Add(MetricJoin, n, st.NodeReady.Seconds())
	r.Add(MetricNodeProcs, n, float64(u.Procs))
	r.Add(MetricNodeRSS, n, float64(u.RSS)/mib)
	r.Add(MetricNodePSS, n, float64(u.PSS)/mib)
	r.Add(MetricNodeAnon, n, float64(u.Anon)/mib)
	r.Add(MetricNodeDirty, n, float64(u.PrivateDirty)/mib)
	return nil
}

// JoinIdle starts server (a control plane without a node), then the node
// setup joining it; it waits for nodeName to be Ready, samples the node's
// memory p.IdleBefore later and stops both. It returns the node setup's
// name, its start times and the sample, and records no row.
func JoinIdle(ctx context.Context, server *Kedge, node NodeFactory, nodeName string, p Plan) (name string, st StartTimes, u Usage, err error) {
	log := p.Log.With("setup", "control plane")
	stopServer, err := start(ctx, log, server, "server")
	if err != nil {
		return "", st, u, err
	}
	defer stopServer(&err)
	if _, err := WaitStart(ctx, server, StartWait{NoNode: true, Exited: server.Exited()}); err != nil {
		return "", st, u, err
	}
	token, err := readToken(server.DataDir())
	if err != nil {
		return "", st, u, err
	}
	n := node("https://127.0.0.1:6443", token)
	log = p.Log.With("setup", n.Name()+" node")
	stopNode, err := start(ctx, log, n, n.Name()+" node")
	if err != nil {
		return "", st, u, err
	}
	defer stopNode(&err)
	var exited <-chan struct{}
	if k, ok := n.(*Kedge); ok {
		exited = k.Exited()
	}
	if st, err = WaitStart(ctx, n, StartWait{Node: nodeName, Exited: exited}); err != nil {
		return "", st, u, err
	}
	log.Info("joined", "ready", st.NodeReady)
	if err := sleep(ctx, p.IdleBefore); err != nil {
		return "", st, u, err
	}
	pids, err := n.PIDs()
	if err != nil {
		return "", st, u, fmt.Errorf("%s node: pids: %w", n.Name(), err)
	}
	if u, _, err = (ProcFS{Root: "/proc"}).Measure(pids); err != nil {
		return "", st, u, err
	}
	log.Info("idle memory", "procs", u.Procs, "rss_mib", u.RSS/mib, "pss_mib", u.PSS/mib, "anon_mib", u.Anon/mib, "private_dirty_mib", u.PrivateDirty/mib)
	return n.Name(), st, u, nil
}

// start starts s and returns what stops it, joining a stop failure (named
// what) into *err; it logs both, and the restarts s counted meanwhile.
func start(ctx context.Context, log *slog.Logger, s Setup, what string) (stop func(err *error), err error) {
	log.Info("start")
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	return func(err *error) {
		logRestarts(log, s)
		log.Info("stop")
		if serr := s.Stop(context.WithoutCancel(ctx)); serr != nil {
			*err = errors.Join(*err, fmt.Errorf("%s: stop: %w", what, serr))
		}
	}, nil
}

// restarter is a setup of supervised processes that counts their restarts
// (the baseline, as systemd would restart them).
type restarter interface {
	Restarts() map[string]int
}

// logRestarts warns about processes of s that exited and were restarted
// during the run: their figures include a crash.
func logRestarts(log *slog.Logger, s Setup) {
	r, ok := s.(restarter)
	if !ok {
		return
	}
	for name, n := range r.Restarts() {
		if n > 0 {
			log.Warn("process restarted during the run", "process", name, "restarts", n)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
