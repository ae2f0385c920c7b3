package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/pkg/localstorage"
	"github.com/kedge-io/kedge/tests/e2e/harness"
	"github.com/kedge-io/kedge/tests/testimage"
)

// localStorageManifest is a claim and a pod of the test image using it,
// scheduled (by the scheduler: the claim binds on its first consumer) to
// node w1.
const localStorageManifest = `apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
---
apiVersion: v1
kind: Pod
metadata:
  name: writer
spec:
  nodeSelector: {kubernetes.io/hostname: w1}
  terminationGracePeriodSeconds: 1
  containers:
    - name: web
      image: ` + testimage.Name + `
      imagePullPolicy: Never
      volumeMounts: [{name: data, mountPath: /data}]
  volumes:
    - name: data
      persistentVolumeClaim: {claimName: data}
`

// TestLocalStorage: a claim of the default class binds on an agent, in the
// agent's own storage path; its data survives the pod's deletion and a
// restart of the agent's kedge; with the agent offline, the deleted volume
// stays Terminating, another agent may not release it, and once the agent
// is back its directory and the volume go.
func TestLocalStorage(t *testing.T) {
	c := harness.NewCluster(t)
	image := testimage.Build(t)
	var a, w1, w2 *harness.Node
	c.Step("server a, agents w1 and w2", func() {
		a = startNode(t, c, image, "a")
		a.WaitReady(5 * time.Minute)
		join := []string{"agent", "--server", "https://" + a.IP().String() + ":6443", "--token", agentToken(t, a)}
		w1 = startNode(t, c, image, "w1", join...)
		w2 = startNode(t, c, image, "w2", join...)
		waitNodeReady(c, a, w1, 5*time.Minute)
		waitNodeReady(c, a, w2, 5*time.Minute)
	})
	exec := func(args ...string) (string, error) {
		return a.Kubectl(append([]string{"exec", "writer", "--", "/webapp"}, args...)...)
	}
	waitWriter := func() {
		t.Helper()
		if out, err := a.Kubectl("wait", "--for=condition=Ready", "pod/writer", "--timeout=120s"); err != nil {
			t.Fatalf("%v\n%s\n%s", err, out, a.MustKubectl("describe", "pod", "writer"))
		}
	}
	var pv, hostDir string
	c.Step("the claim binds on w1, in w1's storage path", func() {
		if err := os.WriteFile(filepath.Join(a.DataDir(), "storage.yaml"), []byte(localStorageManifest), 0o644); err != nil {
			t.Fatal(err)
		}
		a.MustKubectl("apply", "-f", "/var/lib/kedge/storage.yaml")
		waitWriter()
		pv = a.MustKubectl("get", "pvc", "data", "-o", "jsonpath={.spec.volumeName}")
		path := a.MustKubectl("get", "pv", pv, "-o", "jsonpath={.spec.local.path}")
		if filepath.Dir(path) != "/var/lib/kedge/storage" {
			t.Fatalf("volume %s at %q; want w1's /var/lib/kedge/storage/…", pv, path)
		}
		if node := a.MustKubectl("get", "pv", pv, "-o", "jsonpath={.metadata.annotations.kedge\\.io/local-path-node}"); node != "w1" {
			t.Fatalf("volume on node %q; want w1", node)
		}
		if _, err := exec("write", "/data/hello", "from w1"); err != nil {
			t.Fatal(err)
		}
		hostDir = filepath.Join(w1.DataDir(), "storage", filepath.Base(path)) // w1's /var/lib/kedge, seen from the host
		if b, err := os.ReadFile(filepath.Join(hostDir, "hello")); err != nil || string(b) != "from w1" {
			t.Fatalf("on w1's disk: %q, %v", b, err)
		}
	})
	c.Step("the data survives the pod's deletion and a restart of w1's kedge", func() {
		a.MustKubectl("delete", "pod", "writer", "--wait")
		a.MustKubectl("apply", "-f", "/var/lib/kedge/storage.yaml")
		waitWriter()
		if out, err := exec("cat", "/data/hello"); err != nil || out != "from w1" {
			t.Fatalf("after the pod's deletion: %q, %v", out, err)
		}
		w1.Restart()
		waitNodeReady(c, a, w1, 3*time.Minute)
		c.Eventually(2*time.Minute, "writer reads its file after the restart", func() error {
			if out, err := exec("cat", "/data/hello"); err != nil || out != "from w1" {
				return fmt.Errorf("%q, %v", out, err)
			}
			return nil
		})
	})
	c.Step("w1 offline: the deleted volume waits for it; w2 may not release it", func() {
		w1.Stop()
		a.MustKubectl("delete", "pod", "writer", "--grace-period=0", "--force")
		a.MustKubectl("delete", "pvc", "data", "--wait=false")
		c.Eventually(time.Minute, "volume "+pv+" Terminating", func() error {
			if ts, err := a.Kubectl("get", "pv", pv, "-o", "jsonpath={.metadata.deletionTimestamp}"); ts == "" {
				return fmt.Errorf("no deletion timestamp yet: %v", err)
			}
			return nil
		})
		time.Sleep(5 * time.Second)
		if f := a.MustKubectl("get", "pv", pv, "-o", "jsonpath={.metadata.finalizers}"); !strings.Contains(f, localstorage.Finalizer) {
			t.Fatalf("finalizers of the offline node's volume: %s", f)
		}
		if _, err := os.Stat(filepath.Join(hostDir, "hello")); err != nil {
			t.Fatalf("the offline node's data: %v", err)
		}
		out, err := w2.Exec(c.Bin(), "kubectl", "--kubeconfig", "/var/lib/kedge/agent/etc/kubelet.kubeconfig",
			"patch", "pv", pv, "--type=json", "-p", `[{"op":"replace","path":"/metadata/finalizers","value":[]}]`)
		if err == nil || !strings.Contains(out, "does not hold") {
			t.Fatalf("w2 released w1's volume: %q, %v", out, err)
		}
		t.Logf("w2 on w1's volume: %s", out)
	})
	c.Step("w1 back: its volume and directory go", func() {
		w1.Start()
		back := time.Now()
		c.Eventually(3*time.Minute, "volume "+pv+" deleted", func() error {
			out, err := a.Kubectl("get", "pv", pv)
			if err == nil || !strings.Contains(out, "NotFound") {
				return fmt.Errorf("volume still there: %s", out)
			}
			return nil
		})
		if _, err := os.Stat(hostDir); !os.IsNotExist(err) {
			t.Fatalf("w1's directory %s after the volume's deletion: %v", hostDir, err)
		}
		t.Logf("volume %s and its directory gone %.1f s after w1's kedge started again", pv, time.Since(back).Seconds())
	})
	t.Log("\n" + c.Summary())
}
