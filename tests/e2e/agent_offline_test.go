package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/testimage"
)

// TestAgentOfflineStart: an agent restarted while no server can be reached
// starts from its last join and its kubelet's API cache: its pods keep
// running, a container that exits is restarted, a Secret and a ConfigMap
// of the pod and its service account token are served from the cache.
// When the server is back, the Node is Ready again within seconds and a pod
// deleted meanwhile is removed from the agent.
func TestAgentOfflineStart(t *testing.T) {
	c := harness.NewCluster(t)
	image := testimage.Build(t)
	var a, w *harness.Node
	c.Step("server a and agent w, Ready", func() {
		a = startNode(t, c, image, "a")
		a.WaitReady(5 * time.Minute)
		w = startNode(t, c, image, "w", "agent", "--server", "https://"+a.IP().String()+":6443", "--token", agentToken(t, a))
		waitNodeReady(c, a, w, 5*time.Minute)
	})
	c.Step("pods on w: one that serves beside a container that exits, one to delete later", func() {
		manifest := fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: offline}
stringData: {greeting: hello}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: offline}
data: {file: content}
---
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: w
  containers:
  - name: web
    image: %[1]s
    imagePullPolicy: Never
    env: [{name: GREETING, valueFrom: {secretKeyRef: {name: offline, key: greeting}}}]
    volumeMounts: [{name: cfg, mountPath: /cfg}]
  - {name: crash, image: %[1]s, imagePullPolicy: Never, args: [get, "http://127.0.0.1:1/"]}
  volumes: [{name: cfg, configMap: {name: offline}}]
---
apiVersion: v1
kind: Pod
metadata: {name: doomed}
spec:
  nodeName: w
  containers: [{name: web, image: %[1]s, imagePullPolicy: Never}]
`, webImage)
		if err := os.WriteFile(filepath.Join(a.DataDir(), "offline.yaml"), []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		a.MustKubectl("apply", "-f", "/var/lib/kedge/offline.yaml")
		var status string
		c.Eventually(3*time.Minute, "web's container serves and crash has restarted, doomed runs", func() error {
			out, err := a.Kubectl("get", "pod", "web", "doomed", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.phase}:{range .status.containerStatuses[*]}{.name}{.restartCount},{end} {end}`)
			if err != nil || !strings.Contains(out, "web=Running") || !strings.Contains(out, "doomed=Running") || strings.Contains(out, "crash0,") {
				return fmt.Errorf("%q, %v", out, err)
			}
			status = out
			return nil
		})
		t.Logf("pods: %s", status)
	})
	c.Step("the cache holds the node's answers, 0600", func() {
		out, err := w.Exec("find", "/var/lib/kedge/agent/apicache", "-printf", "%m %p\n")
		if err != nil {
			t.Fatal(err)
		}
		files := 0
		for _, line := range strings.Split(out, "\n") {
			mode, path, _ := strings.Cut(line, " ")
			switch {
			case strings.HasSuffix(path, ".json") && mode != "600", path == "/var/lib/kedge/agent/apicache/objects" && mode != "700":
				t.Errorf("%s: mode %s", path, mode)
			case strings.HasSuffix(path, ".json"):
				files++
			}
		}
		t.Logf("w's API cache: %d entries", files)
	})
	before := mustCRI(t, w, "crash")
	webBefore := mustCRI(t, w, "web")
	var restarted time.Time
	c.Step("a stops; w restarts with no server: it starts, its pods run, crash restarts", func() {
		a.Stop()
		w.Stop()
		w.Start()
		start := w.Started()
		var first time.Time
		c.Eventually(2*time.Minute, "crash restarted twice on w", func() error {
			if !w.Running() {
				t.Fatalf("w exited with no server:\n%s", w.LogTail(4000))
			}
			now, err := criContainers(w, "crash")
			if err != nil {
				return err
			}
			if now.maxAttempt > before.maxAttempt && first.IsZero() {
				first = time.Now()
			}
			if now.maxAttempt < before.maxAttempt+2 {
				return fmt.Errorf("crash attempts %d, before %d", now.maxAttempt, before.maxAttempt)
			}
			return nil
		})
		restarted = time.Now()
		if !strings.Contains(w.LogSinceStart(), "starting from the last join") {
			t.Errorf("w's log does not say it started from its last join:\n%s", w.LogTail(3000))
		}
		cached := firstLogTime(w, "served from the node's API cache")
		t.Logf("offline start: the kubelet's API cache served after %v, crash restarted %v after kedge started, again after %v",
			cached.Sub(start).Round(time.Millisecond), first.Sub(start).Round(time.Second), restarted.Sub(start).Round(time.Second))
		web := mustCRI(t, w, "web")
		if web.running["web"] != webBefore.running["web"] {
			t.Errorf("web's container changed while offline: %v, before %v", web.running, webBefore.running)
		}
		out, err := w.Exec(c.Bin(), "crictl", "exec", web.running["web"], "/webapp", "get", "http://127.0.0.1:8080/")
		if err != nil || !strings.HasPrefix(out, "hello from web") {
			t.Errorf("web does not serve offline: %q, %v", out, err)
		}
	})
	c.Step("w is cut off; a starts; doomed is deleted", func() {
		w.CutOff()
		a.Start()
		a.WaitReady(5 * time.Minute)
		a.MustKubectl("delete", "pod", "doomed", "--wait=false")
	})
	c.Step("w is plugged back in: Ready within seconds, doomed removed", func() {
		back := time.Now()
		w.Reconnect()
		var ready, removed time.Duration
		c.Eventually(2*time.Minute, "w Ready with a fresh lease, doomed gone", func() error {
			if ready == 0 {
				renew, err := a.Kubectl("get", "lease", "-n", "kube-node-lease", "w", "-o", "jsonpath={.spec.renewTime}")
				t0, perr := time.Parse(time.RFC3339Nano, renew)
				status, _ := a.Kubectl("get", "node", "w", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
				if err == nil && perr == nil && t0.After(back) && status == "True" {
					ready = time.Since(back)
				}
			}
			if removed == 0 {
				_, err := a.Kubectl("get", "pod", "doomed")
				if err != nil && strings.Contains(err.Error(), "NotFound") {
					if v, err := criContainers(w, "web"); err == nil && v.pods["doomed"] == 0 {
						removed = time.Since(back)
					}
				}
			}
			if ready == 0 || removed == 0 {
				return fmt.Errorf("ready after %v, doomed removed after %v", ready, removed)
			}
			return nil
		})
		t.Logf("reconnection: w's lease renewed and Ready %v after it was plugged back in; doomed removed after %v", ready.Round(100*time.Millisecond), removed.Round(100*time.Millisecond))
		if ready > 30*time.Second {
			t.Errorf("w took %v to be Ready again", ready)
		}
		if !strings.Contains(w.LogSinceStart(), "an API server answers again") {
			t.Errorf("w's log does not say it reconnected:\n%s", w.LogTail(3000))
		}
	})
	t.Log("\n" + c.Summary())
}

// criView is what the node's CRI shows of the containers of one name.
type criView struct {
	maxAttempt int
	running    map[string]string // pod → running container's ID
	pods       map[string]int    // pod → running containers
}

// criContainers asks the node's containerd (`kedge crictl ps -a`) about
// the containers named name.
func criContainers(n *harness.Node, name string) (criView, error) {
	out, err := n.Exec(harnessBin(n), "crictl", "ps", "-a", "--name", "^"+name+"$", "-o", "json")
	if err != nil {
		return criView{}, err
	}
	var list struct {
		Containers []struct {
			ID       string `json:"id"`
			State    string `json:"state"`
			Metadata struct {
				Attempt int `json:"attempt"`
			} `json:"metadata"`
			Labels map[string]string `json:"labels"`
		} `json:"containers"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return criView{}, fmt.Errorf("crictl ps: %w: %s", err, out)
	}
	v := criView{running: map[string]string{}, pods: map[string]int{}}
	for _, ct := range list.Containers {
		v.maxAttempt = max(v.maxAttempt, ct.Metadata.Attempt)
		if ct.State == "CONTAINER_RUNNING" {
			pod := ct.Labels["io.kubernetes.pod.name"]
			v.running[pod] = ct.ID
			v.pods[pod]++
		}
	}
	return v, nil
}

// mustCRI is criContainers that fails the test on error.
func mustCRI(t *testing.T, n *harness.Node, name string) criView {
	t.Helper()
	v, err := criContainers(n, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// harnessBin is the kedge binary as the node sees it.
func harnessBin(n *harness.Node) string { return n.Argv()[0] }

// firstLogTime is the time of n's first log line since its start that
// contains s (zero if none).
func firstLogTime(n *harness.Node, s string) time.Time {
	for _, line := range strings.Split(n.LogSinceStart(), "\n") {
		if !strings.Contains(line, s) {
			continue
		}
		if _, rest, ok := strings.Cut(line, "time="); ok {
			ts, _, _ := strings.Cut(rest, " ")
			if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
				return t
			}
		}
	}
	return time.Time{}
}
