package bench

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// LoadConfig is the API load: Creates ConfigMaps from Clients concurrent
// clients (each its own client-go clientset and connection), then Lists
// LISTs of them, one after the other.
type LoadConfig struct {
	Namespace string // created if missing
	Creates   int    // 2000
	Clients   int    // 16
	Lists     int    // 200
	DataBytes int    // size of each ConfigMap's one value
}

// LoadResult is what the load measured.
type LoadResult struct {
	CreateWall    time.Duration   // first create sent → last create answered
	Creates       []time.Duration // latency of each create
	Lists         []time.Duration // latency of each LIST
	ListedObjects int             // items in the last LIST
	Retried       int             // creates that client-go resent and found stored (AlreadyExists)
}

// Throughput is creates per second over the wall time.
func (r LoadResult) Throughput() float64 {
	if r.CreateWall <= 0 {
		return 0
	}
	return float64(len(r.Creates)) / r.CreateWall.Seconds()
}

// APILoad runs the load against the apiserver cfg points at. Any failed
// request fails the whole load: a benchmark of errors is no benchmark.
func APILoad(ctx context.Context, cfg *rest.Config, lc LoadConfig) (LoadResult, error) {
	if lc.Clients < 1 || lc.Creates < 1 {
		return LoadResult{}, fmt.Errorf("load: need at least one client and one create")
	}
	clients := make([]kubernetes.Interface, lc.Clients)
	for i := range clients {
		c := rest.CopyConfig(cfg)
		c.UserAgent = fmt.Sprintf("kedge-bench/%d", i)
		// client-go caches transports; a dialer of its own keeps each
		// clientset off the shared one, so each has its own connection.
		c.Dial = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		cs, err := kubernetes.NewForConfig(c)
		if err != nil {
			return LoadResult{}, fmt.Errorf("load: client: %w", err)
		}
		clients[i] = cs
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: lc.Namespace}}
	if _, err := clients[0].CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return LoadResult{}, fmt.Errorf("load: namespace: %w", err)
	}
	data := strings.Repeat("x", lc.DataBytes)

	var res LoadResult
	res.Creates = make([]time.Duration, lc.Creates)
	var retried atomic.Int64
	begin := time.Now()
	failed := parallel(ctx, clients, 0, lc.Creates, func(cs kubernetes.Interface, i int) error {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%05d", i)},
			Data:       map[string]string{"v": data},
		}
		t := time.Now()
		_, err := cs.CoreV1().ConfigMaps(lc.Namespace).Create(ctx, cm, metav1.CreateOptions{})
		res.Creates[i] = time.Since(t)
		if apierrors.IsAlreadyExists(err) {
			// client-go resent the create after an answer with
			// Retry-After (a 5xx of a slow etcd, a 429) although the
			// first attempt was stored: the object is created, in
			// the time measured, retry included.
			retried.Add(1)
			err = nil
		}
		if err != nil {
			return fmt.Errorf("load: create %s: %w", cm.Name, err)
		}
		return nil
	})
	res.CreateWall = time.Since(begin)
	res.Retried = int(retried.Load())
	if failed != nil {
		return LoadResult{}, failed
	}

	for i := 0; i < lc.Lists; i++ {
		t := time.Now()
		l, err := clients[0].CoreV1().ConfigMaps(lc.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return LoadResult{}, fmt.Errorf("load: list: %w", err)
		}
		res.Lists = append(res.Lists, time.Since(t))
		res.ListedObjects = len(l.Items)
	}
	return res, nil
}
