package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// ScaleStep is one point of the scale run: the fake nodes and pods that
// exist once it is done. Steps only grow.
type ScaleStep struct {
	Nodes, Pods int
}

// ScaleConfig is the scale run: kwok's fake nodes and pods against a real
// control plane.
type ScaleConfig struct {
	KwokBin, KwokStages string
	Steps               []ScaleStep   // e.g. 100/0, 100/1000, 100/3000, 500/10000
	Clients             int           // concurrent creating clients (16)
	Lists               int           // LISTs of all pods after each step (10)
	Settle              time.Duration // all Running → memory sample (twice that before the first)
	StepTimeout         time.Duration // per step: creates → all Running (10 min)
	Log                 *slog.Logger
}

// ScaleNamespace is the namespace of the scale pods.
const ScaleNamespace = "bench-scale"

// Metrics of the scale run, named after the step they were measured at.
func metricScaleRSS(s ScaleStep) Metric {
	return Metric{Name: fmt.Sprintf("scale %d nodes + %d pods: RSS sum", s.Nodes, s.Pods), Unit: "MiB", Decimals: 0}
}

func metricScaleAnon(s ScaleStep) Metric {
	return Metric{Name: fmt.Sprintf("scale %d nodes + %d pods: RssAnon sum", s.Nodes, s.Pods), Unit: "MiB", Decimals: 0}
}

func metricScaleSlope(what string, from, to ScaleStep) Metric {
	return Metric{Name: fmt.Sprintf("scale %s slope %d → %d pods (%d → %d nodes), per 1k pods", what, from.Pods, to.Pods, from.Nodes, to.Nodes), Unit: "MiB", Decimals: 1}
}

func metricScaleRate(nodes, from, to int) Metric {
	return Metric{Name: fmt.Sprintf("scale %d nodes, pods %d → %d: scheduled/s", nodes, from, to), Unit: "/s", Decimals: 0}
}

func metricScaleTime(nodes, from, to int) Metric {
	return Metric{Name: fmt.Sprintf("scale %d nodes, pods %d → %d: time to all scheduled", nodes, from, to), Unit: "s", Decimals: 1}
}

func metricScaleCreate(s ScaleStep, p string) Metric {
	return Metric{Name: fmt.Sprintf("scale %d nodes + %d pods: pod create %s", s.Nodes, s.Pods, p), Unit: "ms", Decimals: 1}
}

func metricScaleList(s ScaleStep, p string) Metric {
	return Metric{Name: fmt.Sprintf("scale %d nodes + %d pods: LIST all pods %s", s.Nodes, s.Pods, p), Unit: "ms", Decimals: 1}
}

func metricScaleDB(s ScaleStep) Metric {
	return Metric{Name: fmt.Sprintf("scale %d nodes + %d pods: etcd db size", s.Nodes, s.Pods), Unit: "MiB", Decimals: 1}
}

// ScaleMetrics lists the rows RunScale adds for steps, in order.
func ScaleMetrics(steps []ScaleStep) []Metric {
	var ms []Metric
	prev := ScaleStep{}
	for i, s := range steps {
		ms = append(ms, metricScaleRSS(s), metricScaleAnon(s))
		if i > 0 && s.Pods > prev.Pods {
			ms = append(ms, metricScaleTime(s.Nodes, prev.Pods, s.Pods), metricScaleRate(s.Nodes, prev.Pods, s.Pods),
				metricScaleCreate(s, "p50"), metricScaleCreate(s, "p99"), metricScaleList(s, "p50"), metricScaleList(s, "p99"))
		}
		if i > 0 {
			ms = append(ms, metricScaleDB(s))
		}
		prev = s
	}
	for _, g := range scaleGroups(steps) {
		ms = append(ms, g.metrics()...)
	}
	return ms
}

// scaleGroup is a run of steps at one node count (the first group also
// gives the scheduling rate over all its pods), or a step to a new node
// count (slope from the step before).
type scaleGroup struct {
	steps []ScaleStep
	first bool
}

func scaleGroups(steps []ScaleStep) []scaleGroup {
	var gs []scaleGroup
	for i, s := range steps {
		if i > 0 && steps[i-1].Nodes == s.Nodes && len(gs) > 0 {
			gs[len(gs)-1].steps = append(gs[len(gs)-1].steps, s)
			continue
		}
		g := scaleGroup{steps: []ScaleStep{s}, first: i == 0}
		if i > 0 {
			g.steps = []ScaleStep{steps[i-1], s}
		}
		gs = append(gs, g)
	}
	var out []scaleGroup
	for _, g := range gs {
		if len(g.steps) > 1 {
			out = append(out, g)
		}
	}
	return out
}

func (g scaleGroup) metrics() []Metric {
	from, to := g.steps[0], g.steps[len(g.steps)-1]
	ms := []Metric{metricScaleSlope("RSS", from, to), metricScaleSlope("RssAnon", from, to)}
	if g.first && len(g.steps) > 2 {
		ms = append(ms, metricScaleRate(to.Nodes, from.Pods, to.Pods))
	}
	return ms
}

// Slope is the least-squares slope of ys over xs (0 if undefined).
func Slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	if len(xs) < 2 || len(xs) != len(ys) {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx, sy, sxx, sxy = sx+xs[i], sy+ys[i], sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// stepResult is what one step measured.
type stepResult struct {
	rss, anon float64       // MiB
	sched     time.Duration // first create sent → last pod bound
	pods      int           // created in this step
}

// RunScale starts s (a server setup: control plane and its real node),
// runs kwok against it, and grows the cluster step by step, adding one
// value per scale metric for s.Name() to r. dataDir holds the setup's etcd.
func RunScale(ctx context.Context, s Setup, exited <-chan struct{}, dataDir string, sc ScaleConfig, kwokLog io.Writer, r *Results) (err error) {
	log := sc.Log.With("setup", s.Name(), "part", "scale")
	stop, err := start(ctx, log, s, s.Name())
	if err != nil {
		return err
	}
	defer stop(&err)
	if _, err := WaitStart(ctx, s, StartWait{Exited: exited}); err != nil {
		return err
	}
	cfg, err := RESTConfig(s.Kubeconfig())
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	kw := &Kwok{Bin: sc.KwokBin, Stages: sc.KwokStages, Kubeconfig: s.Kubeconfig(), Log: kwokLog}
	if err := kw.Start(); err != nil {
		return err
	}
	defer func() {
		if kerr := kw.Stop(); kerr != nil {
			log.Warn("kwok stop", "err", kerr)
		}
	}()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	tr, err := trackPods(watchCtx, cs, ScaleNamespace)
	if err != nil {
		return err
	}
	clients, err := loadClients(cfg, sc.Clients)
	if err != nil {
		return err
	}
	results := make([]stepResult, len(sc.Steps))
	prev := ScaleStep{}
	for i, step := range sc.Steps {
		if step.Nodes < prev.Nodes || step.Pods < prev.Pods {
			return fmt.Errorf("scale: step %d (%d nodes, %d pods) is smaller than the one before", i+1, step.Nodes, step.Pods)
		}
		wait := stepWait{exited: exited, kwok: kw.Exited(), timeout: sc.StepTimeout}
		if step.Nodes > prev.Nodes {
			t := time.Now()
			if err := createNodes(ctx, clients, prev.Nodes, step.Nodes); err != nil {
				return err
			}
			if err := wait.until(ctx, func() (bool, error) { return kwokNodesReady(ctx, cs, step.Nodes) }); err != nil {
				return fmt.Errorf("scale: %d fake nodes Ready: %w", step.Nodes, err)
			}
			log.Info("fake nodes ready", "nodes", step.Nodes, "took", time.Since(t))
		}
		var creates []time.Duration
		if step.Pods > prev.Pods {
			begin := time.Now()
			if creates, err = createPods(ctx, clients, prev.Pods, step.Pods); err != nil {
				return err
			}
			created := time.Since(begin)
			if err := wait.until(ctx, func() (bool, error) { return tr.scheduled() >= step.Pods, nil }); err != nil {
				return fmt.Errorf("scale: %d pods scheduled (%d are): %w", step.Pods, tr.scheduled(), err)
			}
			results[i].sched = tr.lastBound().Sub(begin)
			results[i].pods = step.Pods - prev.Pods
			if err := wait.until(ctx, func() (bool, error) { return tr.running() >= step.Pods, nil }); err != nil {
				return fmt.Errorf("scale: %d pods Running (%d are): %w", step.Pods, tr.running(), err)
			}
			rate := float64(results[i].pods) / results[i].sched.Seconds()
			log.Info("pods running", "pods", step.Pods, "created_in", created, "scheduled_in", results[i].sched, "scheduled/s", int(rate))
			r.Add(metricScaleTime(step.Nodes, prev.Pods, step.Pods), s.Name(), results[i].sched.Seconds())
			r.Add(metricScaleRate(step.Nodes, prev.Pods, step.Pods), s.Name(), rate)
		}
		settle := sc.Settle
		if i == 0 {
			settle *= 2 // the start-up's garbage is still being returned
		}
		if err := sleep(ctx, settle); err != nil {
			return err
		}
		pids, err := s.PIDs()
		if err != nil {
			return fmt.Errorf("%s: pids: %w", s.Name(), err)
		}
		procfs := ProcFS{Root: "/proc"}
		u, _, err := procfs.Measure(pids)
		if err != nil {
			return err
		}
		anon, err := procfs.RSSAnon(pids)
		if err != nil {
			return err
		}
		results[i].rss, results[i].anon = float64(u.RSS)/mib, float64(anon)/mib
		log.Info("scale memory", "nodes", step.Nodes, "pods", step.Pods, "rss_mib", int(results[i].rss), "anon_mib", int(results[i].anon))
		r.Add(metricScaleRSS(step), s.Name(), results[i].rss)
		r.Add(metricScaleAnon(step), s.Name(), results[i].anon)
		if step.Pods > prev.Pods {
			lists, err := listPods(ctx, clients[0], sc.Lists, step.Pods)
			if err != nil {
				return err
			}
			log.Info("scale api", "pods", step.Pods, "create_p99", Percentile(creates, 99), "list_p99", Percentile(lists, 99))
			r.Add(metricScaleCreate(step, "p50"), s.Name(), ms(Percentile(creates, 50)))
			r.Add(metricScaleCreate(step, "p99"), s.Name(), ms(Percentile(creates, 99)))
			r.Add(metricScaleList(step, "p50"), s.Name(), ms(Percentile(lists, 50)))
			r.Add(metricScaleList(step, "p99"), s.Name(), ms(Percentile(lists, 99)))
		}
		if i > 0 {
			db, err := EtcdDBSize(dataDir)
			if err != nil {
				return err
			}
			r.Add(metricScaleDB(step), s.Name(), float64(db)/mib)
		}
		prev = step
	}
	addGroups(sc.Steps, results, s.Name(), r)
	return nil
}

// addGroups adds the slopes and the first group's scheduling rate.
func addGroups(steps []ScaleStep, results []stepResult, setup string, r *Results) {
	index := map[ScaleStep]int{}
	for i, s := range steps {
		index[s] = i
	}
	for _, g := range scaleGroups(steps) {
		var xs, rss, anon []float64
		var pods int
		var sched time.Duration
		for j, s := range g.steps {
			res := results[index[s]]
			xs, rss, anon = append(xs, float64(s.Pods)/1000), append(rss, res.rss), append(anon, res.anon)
			if j > 0 {
				pods, sched = pods+res.pods, sched+res.sched
			}
		}
		from, to := g.steps[0], g.steps[len(g.steps)-1]
		r.Add(metricScaleSlope("RSS", from, to), setup, Slope(xs, rss))
		r.Add(metricScaleSlope("RssAnon", from, to), setup, Slope(xs, anon))
		if g.first && len(g.steps) > 2 && sched > 0 {
			r.Add(metricScaleRate(to.Nodes, from.Pods, to.Pods), setup, float64(pods)/sched.Seconds())
		}
	}
}

// stepWait polls until a condition holds, failing at once if the setup or
// kwok exits.
type stepWait struct {
	exited, kwok <-chan struct{}
	timeout      time.Duration
}

func (w stepWait) until(ctx context.Context, ok func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	var last error
	for {
		done, err := ok()
		if done {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
		case <-w.exited:
			return fmt.Errorf("the setup exited")
		case <-w.kwok:
			return fmt.Errorf("kwok exited")
		case <-time.After(time.Second):
		}
	}
}

// loadClients returns n clientsets, each with its own connection.
func loadClients(cfg *rest.Config, n int) ([]kubernetes.Interface, error) {
	out := make([]kubernetes.Interface, n)
	for i := range out {
		c := rest.CopyConfig(cfg)
		c.UserAgent = fmt.Sprintf("kedge-bench-scale/%d", i)
		c.Dial = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		cs, err := kubernetes.NewForConfig(c)
		if err != nil {
			return nil, err
		}
		out[i] = cs
	}
	return out, nil
}

// parallel runs f(i) for i in [from, to) on the clients, one goroutine
// each; the first error stops it.
func parallel(ctx context.Context, clients []kubernetes.Interface, from, to int, f func(kubernetes.Interface, int) error) error {
	next := make(chan int)
	errc := make(chan error, len(clients))
	var wg sync.WaitGroup
	for _, cs := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(cs, i); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var failed error
feed:
	for i := from; i < to; i++ {
		select {
		case next <- i:
		case failed = <-errc:
			break feed
		case <-ctx.Done():
			failed = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if failed == nil {
		select {
		case failed = <-errc:
		default:
		}
	}
	return failed
}

func createNodes(ctx context.Context, clients []kubernetes.Interface, from, to int) error {
	return parallel(ctx, clients, from, to, func(cs kubernetes.Interface, i int) error {
		_, err := cs.CoreV1().Nodes().Create(ctx, FakeNode(fmt.Sprintf("kwok-%04d", i)), metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("scale: create node: %w", err)
		}
		return nil
	})
}

// createPods creates pods [from, to) in ScaleNamespace (made on the
// first call) and returns each create's latency.
func createPods(ctx context.Context, clients []kubernetes.Interface, from, to int) ([]time.Duration, error) {
	if from == 0 {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ScaleNamespace}}
		if _, err := clients[0].CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("scale: namespace: %w", err)
		}
		// The ServiceAccount admission refuses pods until the namespace's
		// default ServiceAccount exists, a moment after the namespace.
		deadline := time.Now().Add(time.Minute)
		for {
			_, err := clients[0].CoreV1().ServiceAccounts(ScaleNamespace).Get(ctx, "default", metav1.GetOptions{})
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("scale: no default ServiceAccount in %s: %w", ScaleNamespace, err)
			}
			if err := sleep(ctx, PollInterval); err != nil {
				return nil, err
			}
		}
	}
	lat := make([]time.Duration, to-from)
	err := parallel(ctx, clients, from, to, func(cs kubernetes.Interface, i int) error {
		pod := FakePod(fmt.Sprintf("scale-%05d", i))
		t := time.Now()
		_, err := cs.CoreV1().Pods(ScaleNamespace).Create(ctx, pod, metav1.CreateOptions{})
		lat[i-from] = time.Since(t)
		if err != nil && !apierrors.IsAlreadyExists(err) { // AlreadyExists: resent by client-go after a Retry-After, and stored
			return fmt.Errorf("scale: create pod %s: %w", pod.Name, err)
		}
		return nil
	})
	return lat, err
}

func kwokNodesReady(ctx context.Context, cs kubernetes.Interface, want int) (bool, error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: KwokNodeLabel + "=kwok"})
	if err != nil {
		return false, err
	}
	ready := 0
	for _, n := range nodes.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	return ready >= want, nil
}

// listPods LISTs all pods of ScaleNamespace n times, checking the count.
func listPods(ctx context.Context, cs kubernetes.Interface, n, want int) ([]time.Duration, error) {
	var out []time.Duration
	for range n {
		t := time.Now()
		l, err := cs.CoreV1().Pods(ScaleNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("scale: list pods: %w", err)
		}
		out = append(out, time.Since(t))
		if len(l.Items) != want {
			return nil, fmt.Errorf("scale: LIST returned %d pods, want %d", len(l.Items), want)
		}
	}
	return out, nil
}

// podTracker follows the scale pods through a watch: how many are bound
// to a node and Running, and when the last was bound.
type podTracker struct {
	mu       sync.Mutex
	bound    map[string]bool
	run      map[string]bool
	lastBind time.Time
}

func trackPods(ctx context.Context, cs kubernetes.Interface, ns string) (*podTracker, error) {
	t := &podTracker{bound: map[string]bool{}, run: map[string]bool{}}
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Pods().Informer()
	see := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if p.Spec.NodeName != "" && !t.bound[p.Name] {
			t.bound[p.Name] = true
			t.lastBind = time.Now()
		}
		if p.Status.Phase == corev1.PodRunning {
			t.run[p.Name] = true
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    see,
		UpdateFunc: func(_, obj any) { see(obj) },
	}); err != nil {
		return nil, err
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("scale: pod watch: %w", ctx.Err())
	}
	return t, nil
}

func (t *podTracker) scheduled() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.bound)
}

func (t *podTracker) running() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.run)
}

func (t *podTracker) lastBound() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastBind
}
