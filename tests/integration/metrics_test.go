package integration

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/testimage"
)

// burnManifest is a Deployment whose pod spins a CPU (far above its 20m
// request) and a HorizontalPodAutoscaler on 50% CPU: it scales up.
const burnManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: burn
spec:
  replicas: 1
  selector:
    matchLabels: {app: burn}
  template:
    metadata:
      labels: {app: burn}
    spec:
      containers:
        - name: burn
          image: ` + webImage + `
          imagePullPolicy: Never
          args: [burn]
          resources:
            requests: {cpu: 20m}
            limits: {cpu: 200m}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: burn
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burn}
  minReplicas: 1
  maxReplicas: 3
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: {type: Utilization, averageUtilization: 50}
`

// topLine matches a line of `kubectl top nodes --no-headers`: name, CPU
// in millicores and %, memory in Mi and %.
var topLine = regexp.MustCompile(`^(\S+)\s+(\d+)m\s+(\d+)%\s+(\d+)Mi\s+(\d+)%`)

// TestMetricsAPI: the in-process metrics-server answers `kubectl top nodes`
// and `kubectl top pods` with numbers, and an HPA on CPU scales a
// Deployment whose pod burns CPU.
func TestMetricsAPI(t *testing.T) {
	n := newNode(t)
	testimage.Drop(t, n.dataDir(), testimage.Build(t))
	t.Cleanup(func() { n.killall() })
	n.start()
	n.waitReady(3 * time.Minute)
	n.waitNodeReady(2 * time.Minute)
	begin := time.Now()
	manifest := filepath.Join(n.dir, "burn.yaml")
	write(t, manifest, burnManifest)
	if _, err := n.kubectl("apply", "-f", manifest); err != nil {
		t.Fatal(err)
	}

	avail := eventually(t, 90*time.Second, func() (string, bool) {
		out, _ := n.kubectl("get", "apiservice", "v1beta1.metrics.k8s.io", "-o", `jsonpath={.status.conditions[?(@.type=="Available")].status} {.status.conditions[?(@.type=="Available")].message}`)
		return out, strings.HasPrefix(out, "True")
	})
	t.Logf("APIService v1beta1.metrics.k8s.io Available %s after the node was Ready (%s)", time.Since(begin).Round(time.Second), avail)

	node := eventually(t, 90*time.Second, func() (string, bool) {
		out, err := n.kubectl("top", "nodes", "--no-headers")
		m := topLine.FindStringSubmatch(out)
		return out, err == nil && m != nil && m[1] == "integration" && atoi(m[2]) > 0 && atoi(m[4]) > 0
	})
	t.Logf("kubectl top nodes (%s): %s", time.Since(begin).Round(time.Second), node)

	pods := eventually(t, 90*time.Second, func() (string, bool) {
		out, err := n.kubectl("top", "pods", "-A", "--no-headers")
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if err == nil && len(f) == 4 && f[0] == "default" && strings.HasPrefix(f[1], "burn-") && atoi(strings.TrimSuffix(f[2], "m")) > 0 {
				return out, true
			}
		}
		return out, false
	})
	t.Logf("kubectl top pods -A (%s):\n%s", time.Since(begin).Round(time.Second), pods)

	// 200m of a 20m request: 1000%, over the 50% target; the HPA (synced
	// every 15 s) scales to maxReplicas.
	hpa := eventually(t, 3*time.Minute, func() (string, bool) {
		out, _ := n.kubectl("get", "hpa", "burn", "-o", "jsonpath={.status.currentMetrics[0].resource.current.averageUtilization}% {.status.desiredReplicas}")
		f := strings.Fields(out)
		return out, len(f) == 2 && atoi(f[1]) >= 2
	})
	t.Logf("HPA burn: utilization and desired replicas %s, %s after the node was Ready", hpa, time.Since(begin).Round(time.Second))
	if out, err := n.kubectl("rollout", "status", "deployment/burn", "--timeout=120s"); err != nil {
		t.Fatalf("scaled Deployment not rolled out: %v\n%s\n%s", err, out, n.describe("hpa"))
	}
	replicas := must(n.kubectl("get", "deployment", "burn", "-o", "jsonpath={.status.readyReplicas}"))
	if atoi(replicas) < 2 {
		t.Fatalf("Deployment burn has %s ready replicas after the HPA scaled it\n%s", replicas, n.describe("hpa"))
	}
	// The Deployment was created with one replica: the HPA scaled it.
	rescaled := must(n.kubectl("get", "events", "--field-selector", "involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name=burn,reason=SuccessfulRescale", "-o", "jsonpath={.items[*].message}"))
	if !strings.Contains(rescaled, "New size:") {
		t.Fatalf("no SuccessfulRescale event of HPA burn: %q\n%s", rescaled, n.describe("hpa"))
	}
	t.Logf("Deployment burn: %s ready replicas, %s after the node was Ready; HPA events: %s", replicas, time.Since(begin).Round(time.Second), rescaled)
	t.Logf("stopped in %s", n.stop(30*time.Second).Round(100*time.Millisecond))
}

// atoi is strconv.Atoi with -1 for text that is not a number.
func atoi(s string) int {
	v, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return v
}
