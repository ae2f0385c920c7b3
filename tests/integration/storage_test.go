package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kedge-io/kedge/pkg/localstorage"
	"github.com/kedge-io/kedge/tests/testimage"
)

// storagePod is a pod of the test image with the claim "data" at /data.
const storagePod = `apiVersion: v1
kind: Pod
metadata:
  name: writer
spec:
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

const storageClaim = `apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
`

// storageSet has two replicas, each with its own claim (and a non-root
// user: the volume directory is writable by any UID).
const storageSet = `apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 2
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      terminationGracePeriodSeconds: 1
      securityContext: {runAsUser: 1000, runAsGroup: 1000}
      containers:
        - name: web
          image: ` + testimage.Name + `
          imagePullPolicy: Never
          volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        storageClassName: local-path
        resources: {requests: {storage: 64Mi}}
`

// TestLocalStorage: the default StorageClass local-path binds a claim on
// its first consumer, on this node; the data outlives the pod and a kedge
// restart; each StatefulSet replica keeps its own volume; Retain keeps the
// directory (the volume Released), Delete removes it; a node's credentials
// touch nothing but its own volumes being deleted.
func TestLocalStorage(t *testing.T) {
	n := newNode(t)
	testimage.Drop(t, n.dataDir(), testimage.Build(t))
	t.Cleanup(func() { n.killall() })
	n.start()
	n.waitReady(3 * time.Minute)
	n.waitNodeReady(2 * time.Minute)
	begin := time.Now()
	root := filepath.Join(n.dataDir(), localstorage.DefaultDir)
	apply := func(name, manifest string) {
		t.Helper()
		path := filepath.Join(n.dir, name+".yaml")
		write(t, path, manifest)
		if out, err := n.kubectl("apply", "-f", path); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	get := func(args ...string) string {
		out, _ := n.kubectl(append([]string{"get"}, args...)...)
		return out
	}
	exec := func(pod string, args ...string) (string, error) {
		return n.kubectl(append([]string{"exec", pod, "--", "/webapp"}, args...)...)
	}
	waitPod := func(pod string) {
		t.Helper()
		if out, err := n.kubectl("wait", "--for=condition=Ready", "pod/"+pod, "--timeout=90s"); err != nil {
			t.Fatalf("pod %s not Ready: %v\n%s\n%s", pod, err, out, n.describe("pod/"+pod))
		}
	}

	// The default class, and the node's storage path on its Node.
	if got := get("storageclass", "local-path", "-o", `jsonpath={.metadata.annotations.storageclass\.kubernetes\.io/is-default-class} {.volumeBindingMode} {.reclaimPolicy}`); got != "true WaitForFirstConsumer Delete" {
		t.Fatalf("StorageClass local-path: %q", got)
	}
	eventually(t, 30*time.Second, func() (string, bool) {
		out := get("node", "integration", "-o", `jsonpath={.metadata.annotations.kedge\.io/local-storage-path}`)
		return out, out == root
	})

	// A claim without a class waits for its first consumer.
	apply("claim", storageClaim)
	time.Sleep(2 * time.Second)
	if phase := get("pvc", "data", "-o", "jsonpath={.status.phase} {.spec.volumeName}"); phase != "Pending" {
		t.Fatalf("claim before any pod: %q; want Pending with no volume", phase)
	}
	apply("writer", storagePod)
	waitPod("writer")
	pv := get("pvc", "data", "-o", "jsonpath={.spec.volumeName}")
	if got := get("pvc", "data", "-o", "jsonpath={.status.phase} {.spec.storageClassName}"); got != "Bound local-path" || pv == "" {
		t.Fatalf("claim: %q, volume %q; want Bound local-path", got, pv)
	}
	path := get("pv", pv, "-o", "jsonpath={.spec.local.path}")
	if filepath.Dir(path) != root || !strings.HasPrefix(filepath.Base(path), pv+"_default_data") {
		t.Fatalf("volume path %q; want %s/%s_default_data", path, root, pv)
	}
	if got := get("pv", pv, "-o", "jsonpath={.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]} {.metadata.finalizers}"); !strings.HasPrefix(got, "integration ") || !strings.Contains(got, localstorage.Finalizer) {
		t.Fatalf("volume node affinity and finalizers: %q", got)
	}
	t.Logf("claim bound to %s at %s (%s after the node was Ready)", pv, path, time.Since(begin).Round(100*time.Millisecond))
	if _, err := exec("writer", "write", "/data/hello", "kept"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(path, "hello")); err != nil || string(b) != "kept" {
		t.Fatalf("on the host: %q, %v", b, err)
	}

	// The data outlives the pod.
	if _, err := n.kubectl("delete", "pod", "writer", "--wait"); err != nil {
		t.Fatal(err)
	}
	apply("writer", storagePod)
	waitPod("writer")
	if out, err := exec("writer", "cat", "/data/hello"); err != nil || out != "kept" {
		t.Fatalf("after the pod's deletion: %q, %v", out, err)
	}

	// Each replica of a StatefulSet has its own volume, kept across pod
	// deletion.
	apply("db", storageSet)
	if out, err := n.kubectl("rollout", "status", "statefulset/db", "--timeout=120s"); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, n.describe("pods -l app=db"))
	}
	for _, pod := range []string{"db-0", "db-1"} {
		if _, err := exec(pod, "write", "/data/id", pod); err != nil {
			t.Fatalf("%s writes as UID 1000: %v", pod, err)
		}
	}
	if _, err := n.kubectl("delete", "pod", "db-0", "db-1", "--wait"); err != nil {
		t.Fatal(err)
	}
	if out, err := n.kubectl("rollout", "status", "statefulset/db", "--timeout=120s"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, pod := range []string{"db-0", "db-1"} {
		waitPod(pod)
		if out, err := exec(pod, "cat", "/data/id"); err != nil || out != pod {
			t.Fatalf("%s after its deletion reads %q, %v", pod, out, err)
		}
	}

	// And a kedge restart.
	n.stop(60 * time.Second)
	n.start()
	n.waitReady(3 * time.Minute)
	for _, c := range []struct{ pod, file, want string }{{"writer", "/data/hello", "kept"}, {"db-0", "/data/id", "db-0"}, {"db-1", "/data/id", "db-1"}} {
		out := eventually(t, 120*time.Second, func() (string, bool) {
			out, err := exec(c.pod, "cat", c.file)
			return out, err == nil && out == c.want
		})
		t.Logf("after the restart %s reads %q from %s", c.pod, out, c.file)
	}

	// A node's own credentials: no change to a volume in use, no deletion,
	// nothing on another node's volume.
	nodeKubeconfig := filepath.Join(n.dataDir(), "agent", "etc", "kubelet.kubeconfig")
	asNode := func(args ...string) (string, error) {
		return n.kubectl(append([]string{"--kubeconfig", nodeKubeconfig}, args...)...)
	}
	dropFinalizers := `[{"op":"replace","path":"/metadata/finalizers","value":[]}]`
	if out, err := asNode("patch", "pv", pv, "--type=json", "-p", dropFinalizers); err == nil || !strings.Contains(out, "being deleted") {
		t.Errorf("the node removed the finalizers of a volume in use: %q, %v", out, err)
	} else {
		t.Logf("node patches its volume in use: %s", out)
	}
	if out, err := asNode("delete", "pv", pv, "--wait=false"); err == nil || !strings.Contains(out, "forbidden") {
		t.Errorf("the node deleted a volume: %q, %v", out, err)
	} else {
		t.Logf("node deletes its volume: %s", out)
	}
	other := `apiVersion: v1
kind: PersistentVolume
metadata:
  name: elsewhere
  annotations: {` + localstorage.NodeAnnotation + `: other}
  labels: {` + localstorage.NodeLabel + `: other}
  finalizers: [` + localstorage.Finalizer + `]
spec:
  capacity: {storage: 1Mi}
  accessModes: [ReadWriteOnce]
  storageClassName: local-path
  local: {path: /var/lib/kedge/storage/elsewhere}
  nodeAffinity:
    required:
      nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [other]}]}]
`
	apply("elsewhere", other)
	if _, err := n.kubectl("delete", "pv", "elsewhere", "--wait=false"); err != nil {
		t.Fatal(err)
	}
	if out, err := asNode("patch", "pv", "elsewhere", "--type=json", "-p", dropFinalizers); err == nil || !strings.Contains(out, "does not hold") {
		t.Errorf("the node removed the finalizer of another node's volume: %q, %v", out, err)
	} else {
		t.Logf("node patches another node's volume: %s", out)
	}
	if _, err := n.kubectl("patch", "pv", "elsewhere", "--type=json", "-p", dropFinalizers); err != nil {
		t.Fatal(err)
	}

	// Retain: the claim goes, the volume stays Released with its data; the
	// volume's deletion then keeps the directory.
	if _, err := n.kubectl("patch", "pv", pv, "-p", `{"spec":{"persistentVolumeReclaimPolicy":"Retain"}}`); err != nil {
		t.Fatal(err)
	}
	if _, err := n.kubectl("delete", "pod", "writer", "--wait"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.kubectl("delete", "pvc", "data", "--wait"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() (string, bool) {
		out := get("pv", pv, "-o", "jsonpath={.status.phase}")
		return out, out == "Released"
	})
	if b, err := os.ReadFile(filepath.Join(path, "hello")); err != nil || string(b) != "kept" {
		t.Fatalf("Retain: the data of the Released volume: %q, %v", b, err)
	}
	if _, err := n.kubectl("delete", "pv", pv, "--timeout=30s"); err != nil {
		t.Fatalf("a Retain volume is not deleted: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(path, "hello")); err != nil || string(b) != "kept" {
		t.Fatalf("Retain: after the volume's deletion: %q, %v", b, err)
	}

	// Delete: the claim's deletion removes the volume and its directory.
	dbPV := get("pvc", "data-db-0", "-o", "jsonpath={.spec.volumeName}")
	dbPath := get("pv", dbPV, "-o", "jsonpath={.spec.local.path}")
	if _, err := os.Stat(filepath.Join(dbPath, "id")); err != nil {
		t.Fatal(err)
	}
	if _, err := n.kubectl("delete", "statefulset", "db", "--wait"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.kubectl("delete", "pvc", "data-db-0", "data-db-1", "--wait"); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	eventually(t, 60*time.Second, func() (string, bool) {
		out, err := n.kubectl("get", "pv", dbPV)
		_, statErr := os.Stat(dbPath)
		return out, err != nil && strings.Contains(out, "NotFound") && os.IsNotExist(statErr)
	})
	t.Logf("Delete: volume %s and %s gone %s after the claim", dbPV, dbPath, time.Since(deleted).Round(100*time.Millisecond))
}
