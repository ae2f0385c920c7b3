package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// PollInterval is how often the waits look; it bounds their resolution.
const PollInterval = 100 * time.Millisecond

// RESTConfig loads an admin kubeconfig for benchmark clients: no client-side
// rate limit (the load generator measures the server, not client-go's
// token bucket) and a per-request timeout.
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = -1, 0 // -1: no rate limiter
	cfg.Timeout = 30 * time.Second
	return cfg, nil
}

// StartTimes are the readiness milestones of a setup, measured from its exec.
type StartTimes struct {
	APIReady   time.Duration // GET /readyz answered "ok"
	NodeReady  time.Duration // the node's Ready condition is True
	PodRunning time.Duration // the first pod (the test image, created as soon as the API takes it) is Running
}

// StartWait says what WaitStart waits for.
type StartWait struct {
	Node     string // node name; "" for any node
	NoNode   bool   // a control plane without nodes: wait for the API only
	PodImage string // image of the first pod; "" to skip the pod
	PodName  string // default "first"
	Timeout  time.Duration
	Exited   <-chan struct{} // closed if the setup died: fail at once (may be nil)
}

// WaitStart polls, from exec on, until the API is ready, the node is Ready
// and (with PodImage) a pod of that image runs in namespace default. Each
// milestone is timed from exec (the setup's ExecTime).
func WaitStart(ctx context.Context, s Setup, w StartWait) (StartTimes, error) {
	if w.PodName == "" {
		w.PodName = "first"
	}
	if w.Timeout == 0 {
		w.Timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	var t StartTimes
	var cs *kubernetes.Clientset
	podCreated := false
	var lastErr error
	for {
		since := time.Since(s.ExecTime())
		switch {
		case cs == nil:
			cs, lastErr = clientFor(s.Kubeconfig())
		case t.APIReady == 0:
			if lastErr = readyz(ctx, cs); lastErr == nil {
				t.APIReady = since
			}
			if t.APIReady != 0 && w.NoNode {
				return t, nil
			}
		default:
			if t.NodeReady == 0 {
				ok, err := nodeReady(ctx, cs, w.Node)
				if ok {
					t.NodeReady = since
				}
				lastErr = err
			}
			if w.PodImage != "" && !podCreated {
				err := createPod(ctx, cs, w.PodName, w.PodImage)
				podCreated = err == nil || apierrors.IsAlreadyExists(err)
				if err != nil && !podCreated {
					lastErr = err // e.g. the default ServiceAccount does not exist yet
				}
			}
			if w.PodImage != "" && podCreated && t.PodRunning == 0 {
				p, err := cs.CoreV1().Pods("default").Get(ctx, w.PodName, metav1.GetOptions{})
				if err == nil && p.Status.Phase == corev1.PodRunning {
					t.PodRunning = time.Since(s.ExecTime())
				}
			}
		}
		if t.APIReady != 0 && t.NodeReady != 0 && (w.PodImage == "" || t.PodRunning != 0) {
			return t, nil
		}
		select {
		case <-ctx.Done():
			return t, fmt.Errorf("%s: not up after %s (api %v, node %v, pod %v); last error: %v",
				s.Name(), w.Timeout, t.APIReady, t.NodeReady, t.PodRunning, lastErr)
		case <-w.Exited:
			return t, fmt.Errorf("%s: exited while starting", s.Name())
		case <-time.After(PollInterval):
		}
	}
}

func clientFor(kubeconfig string) (*kubernetes.Clientset, error) {
	if _, err := os.Stat(kubeconfig); err != nil {
		return nil, err
	}
	cfg, err := RESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 5 * time.Second
	return kubernetes.NewForConfig(cfg)
}

func readyz(ctx context.Context, cs kubernetes.Interface) error {
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return err
	}
	if string(body) != "ok" {
		return fmt.Errorf("/readyz: %q", body)
	}
	return nil
}

// nodeReady reports whether the named node (or, for "", any node) is Ready.
func nodeReady(ctx context.Context, cs kubernetes.Interface, name string) (bool, error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err
	}
	for _, n := range nodes.Items {
		if name != "" && n.Name != name {
			continue
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
	}
	return false, errors.New("node not Ready yet")
}

func createPod(ctx context.Context, cs kubernetes.Interface, name, image string) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       podSpec(image),
	}
	_, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	return err
}

// podSpec runs the test image (present on the node: imported, never pulled).
func podSpec(image string) corev1.PodSpec {
	grace := int64(5)
	automount := false
	return corev1.PodSpec{
		Containers: []corev1.Container{{
			Name: "app", Image: image, ImagePullPolicy: corev1.PullNever,
		}},
		TerminationGracePeriodSeconds: &grace,
		AutomountServiceAccountToken:  &automount,
	}
}

// readToken reads a kedge server's join token.
func readToken(dataDir string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(dataDir, "server", "token"))
	if err != nil {
		return "", fmt.Errorf("join token: %w", err)
	}
	return strings.TrimSpace(string(raw)), nil
}

// HeapInuse reads go_memstats_heap_inuse_bytes from the apiserver's
// /metrics. In kedge that is the heap of the whole process (every component).
func HeapInuse(ctx context.Context, kubeconfig string) (float64, error) {
	cs, err := clientFor(kubeconfig)
	if err != nil {
		return 0, err
	}
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("/metrics: %w", err)
	}
	return PromValue(body, "go_memstats_heap_inuse_bytes")
}

// PromValue returns the value of an unlabelled sample in Prometheus text format.
func PromValue(body []byte, name string) (float64, error) {
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == name {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("metric %s not found", name)
}
