package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/pkg/coredns"
	"github.com/kedge-io/kedge/tests/testimage"
)

const webImage = testimage.Name

const webManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: ` + webImage + `
          imagePullPolicy: Never
          ports: [{containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /, port: 8080}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`

// TestNode runs `kedge server` with its node components: pods from a
// locally built image, Services, DNS, restart, a missing image, killall.
func TestNode(t *testing.T) {
	n := newNode(t)
	testimage.Drop(t, n.dataDir(), testimage.Build(t))
	t.Cleanup(func() { n.killall() })
	n.start("--kubelet-arg", "max-pods=50")
	n.waitReady(3 * time.Minute)
	readyIn := n.waitNodeReady(2 * time.Minute)
	t.Logf("node Ready %s after exec", readyIn.Round(100*time.Millisecond))

	manifest := filepath.Join(n.dir, "web.yaml")
	write(t, manifest, webManifest)
	if _, err := n.kubectl("apply", "-f", manifest); err != nil {
		t.Fatal(err)
	}
	if out, err := n.kubectl("rollout", "status", "deployment/web", "--timeout=180s"); err != nil {
		t.Fatalf("deployment not ready: %v\n%s\n%s", err, out, n.describe("pods"))
	}
	pods := strings.Fields(must(n.kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}")))
	ips := strings.Fields(must(n.kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.podIP}")))
	if len(pods) != 2 || len(ips) != 2 {
		t.Fatalf("pods %v, IPs %v; want 2 each", pods, ips)
	}
	clusterIP := must(n.kubectl("get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"))

	// The Service answers from the host (kube-proxy's rules on the node).
	body := eventually(t, 60*time.Second, func() (string, bool) {
		b, err := httpGet("http://" + clusterIP + "/")
		return b, err == nil && strings.HasPrefix(b, "hello from web-")
	})
	t.Logf("host → ClusterIP %s: %s", clusterIP, body)

	// From a pod: the Service by DNS name, another pod by IP, kubernetes.default.
	inPod := func(args ...string) (string, error) {
		return n.kubectl(append([]string{"exec", pods[0], "--", "/webapp"}, args...)...)
	}
	out := eventually(t, 60*time.Second, func() (string, bool) {
		out, err := inPod("get", "http://web.default.svc.cluster.local/")
		return out, err == nil && strings.HasPrefix(out, "hello from web-")
	})
	t.Logf("pod → web.default.svc.cluster.local: %s", out)
	if out, err := inPod("get", "http://"+ips[1]+":8080/"); err != nil || !strings.HasPrefix(out, "hello from "+pods[1]) {
		t.Fatalf("pod → pod %s: %q, %v", ips[1], out, err)
	}
	if out, err := inPod("resolve", "kubernetes.default"); err != nil || out != "10.43.0.1" {
		t.Fatalf("resolve kubernetes.default in a pod = %q, %v; want 10.43.0.1", out, err)
	}

	// An image that is nowhere: a clear pull error, nothing else breaks.
	if _, err := n.kubectl("run", "missing", "--image=docker.io/library/kedge-no-such-image:1"); err != nil {
		t.Fatal(err)
	}
	reason := eventually(t, 90*time.Second, func() (string, bool) {
		out, _ := n.kubectl("get", "pod", "missing", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}")
		return out, out == "ErrImagePull" || out == "ImagePullBackOff"
	})
	events := must(n.kubectl("get", "events", "--field-selector", "involvedObject.name=missing", "-o", "jsonpath={.items[*].message}"))
	if !strings.Contains(events, "kedge-no-such-image") {
		t.Fatalf("no event naming the missing image; events: %s", events)
	}
	t.Logf("missing image: %s", reason)
	if _, err := n.kubectl("rollout", "status", "deployment/web", "--timeout=10s"); err != nil {
		t.Fatal(err)
	}

	// The bundled ctr sees the node's images, in the k8s.io namespace.
	if out, code := runKedge(t, n.bin, nil, "ctr", "images", "ls", "-q"); code != 0 || !strings.Contains(out, webImage) || !strings.Contains(out, "kedge.local/pause:1.0") {
		t.Fatalf("kedge ctr images ls: exit %d\n%s", code, out)
	}

	// The bundled crictl sees the node's pods.
	crictl := exec.Command(n.bin, "crictl", "pods", "--name", "web", "-q")
	crictl.Env = append(os.Environ(), "KEDGE_DATA_DIR="+n.dataDir())
	if out, err := crictl.Output(); err != nil || len(strings.Fields(string(out))) != 2 {
		t.Fatalf("kedge crictl pods: %v\n%s", err, out)
	}
	// It reports the cri-tools release it was built from, as crictl does.
	if out, code := runKedge(t, n.bin, nil, "crictl", "--version"); code != 0 || !regexp.MustCompile(`^crictl version v\d+\.\d+\.\d+\n$`).MatchString(out) {
		t.Fatalf("kedge crictl --version: exit %d, %q", code, out)
	}

	// Restart kedge: the pods keep running, untouched.
	before := must(n.kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.containerStatuses[0].containerID}"))
	n.stop(15 * time.Second)
	if _, err := httpGet("http://" + ips[0] + ":8080/"); err != nil {
		t.Fatalf("pod %s not answering while kedge is stopped: %v", ips[0], err)
	}
	n.start("--kubelet-arg", "max-pods=50")
	n.waitReady(3 * time.Minute)
	n.waitNodeReady(2 * time.Minute)
	time.Sleep(5 * time.Second) // let the kubelet resync its pods
	after := must(n.kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.containerStatuses[0].containerID}"))
	restarts := must(n.kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.containerStatuses[0].restartCount}"))
	if before != after || restarts != "0 0" {
		t.Fatalf("containers changed across a kedge restart: %s → %s, restarts %q", before, after, restarts)
	}
	shimRSS := 0.0
	for _, pid := range processesNamed("containerd-shim") {
		shimRSS += rssMiB(pid)
	}
	t.Logf("RSS after the restart: kedge %.0f MiB, its %d pod shims %.0f MiB together", n.rssMiB(), len(processesNamed("containerd-shim")), shimRSS)
	if _, err := httpGet("http://" + coredns.HealthAddress + "/health"); err != nil {
		t.Fatalf("CoreDNS health: %v", err)
	}
	n.stop(15 * time.Second)

	// killall: no containers, mounts or interfaces left.
	n.killall()
	if shims := processesNamed("containerd-shim"); len(shims) > 0 {
		t.Fatalf("shims still running after killall: %v", shims)
	}
	for _, root := range []string{n.dataDir(), "/run/kedge", "/var/lib/kubelet"} {
		if m := mountsUnder(root); len(m) > 0 {
			t.Fatalf("mounts left under %s after killall: %v", root, m)
		}
	}
	if ns, _ := filepath.Glob("/run/netns/cni-*"); len(ns) > 0 {
		t.Fatalf("pod network namespaces left after killall: %v", ns)
	}
	for _, link := range []string{"cni0", "flannel.1"} {
		if _, err := os.Stat("/sys/class/net/" + link); err == nil {
			t.Fatalf("%s still exists after killall", link)
		}
	}
}

// waitNodeReady waits for the node's Ready condition and returns the time
// since the process was exec'd.
func (n *node) waitNodeReady(timeout time.Duration) time.Duration {
	n.t.Helper()
	if out, err := n.kubectl("wait", "--for=condition=Ready", "node/integration", fmt.Sprintf("--timeout=%ds", int(timeout.Seconds()))); err != nil {
		n.t.Fatalf("node not Ready: %v\n%s", err, out)
	}
	return time.Since(n.started)
}

func (n *node) describe(what string) string {
	out, _ := n.kubectl("describe", what)
	return out
}

// killall runs `kedge killall` for this node's data dir.
func (n *node) killall() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, n.bin, "killall", "--data-dir", n.dataDir()).CombinedOutput(); err != nil {
		n.t.Errorf("kedge killall: %v\n%s", err, out)
	}
}

func httpGet(url string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

func processesNamed(name string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(strings.SplitN(string(raw), "\x00", 2)[0], name) {
			out = append(out, e.Name())
		}
	}
	return out
}

func mountsUnder(root string) []string {
	raw, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == root || strings.HasPrefix(f[4], root+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}
