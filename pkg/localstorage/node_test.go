package localstorage

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// nodeVolumes returns the node side of node "n1" with its root in a temp
// dir, the API holding pvs (each also in the lister).
func nodeVolumes(t *testing.T, pvs ...*corev1.PersistentVolume) (*volumes, *fake.Clientset, string) {
	t.Helper()
	rootPath := filepath.Join(t.TempDir(), "storage")
	if err := os.Mkdir(rootPath, 0o700); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(rootPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	client := fake.NewClientset()
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, pv := range pvs {
		if pv.Spec.Local != nil && !filepath.IsAbs(pv.Spec.Local.Path) {
			pv.Spec.Local.Path = filepath.Join(rootPath, pv.Spec.Local.Path)
		}
		if _, err := client.CoreV1().PersistentVolumes().Create(context.Background(), pv, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_ = indexer.Add(pv)
	}
	v := newVolumes(client, "n1", rootPath, root, slog.New(slog.NewTextHandler(io.Discard, nil)))
	v.pvs = corelisters.NewPersistentVolumeLister(indexer)
	return v, client, rootPath
}

func localPV(name, node, dir string, policy corev1.PersistentVolumeReclaimPolicy, deleting bool) *corev1.PersistentVolume {
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{NodeAnnotation: node}, Labels: map[string]string{NodeLabel: node},
			Finalizers: []string{"kubernetes.io/pv-protection", Finalizer}},
		Spec: corev1.PersistentVolumeSpec{PersistentVolumeReclaimPolicy: policy,
			PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir}}},
	}
	if deleting {
		now := metav1.Now()
		pv.DeletionTimestamp = &now
	}
	return pv
}

func finalizers(t *testing.T, client *fake.Clientset, name string) []string {
	t.Helper()
	pv, err := client.CoreV1().PersistentVolumes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pv.Finalizers
}

// TestNodeCreatesDirectories: a volume of this node gets its directory,
// writable by any UID; another node's volume does not.
func TestNodeCreatesDirectories(t *testing.T) {
	v, _, root := nodeVolumes(t,
		localPV("pvc-a", "n1", "pvc-a_ns_c", corev1.PersistentVolumeReclaimDelete, false),
		localPV("pvc-b", "n2", "pvc-b_ns_c", corev1.PersistentVolumeReclaimDelete, false))
	for _, name := range []string{"pvc-a", "pvc-b", "pvc-missing"} {
		if err := v.sync(context.Background(), name); err != nil {
			t.Fatalf("sync %s: %v", name, err)
		}
	}
	fi, err := os.Stat(filepath.Join(root, "pvc-a_ns_c"))
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != VolumeMode {
		t.Fatalf("pvc-a's directory: %v, %v; want a directory of mode %s", fi, err, VolumeMode)
	}
	if _, err := os.Stat(filepath.Join(root, "pvc-b_ns_c")); !os.IsNotExist(err) {
		t.Errorf("n2's volume made on n1: %v", err)
	}
	// Data in it stays across syncs.
	if err := os.WriteFile(filepath.Join(root, "pvc-a_ns_c", "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := v.sync(context.Background(), "pvc-a"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "pvc-a_ns_c", "f")); err != nil || string(b) != "x" {
		t.Errorf("data after a second sync: %q, %v", b, err)
	}
}

// TestNodeDeletes: policy Delete removes the directory, Retain keeps it;
// both then drop kedge's finalizer and only it.
func TestNodeDeletes(t *testing.T) {
	v, client, root := nodeVolumes(t,
		localPV("pvc-del", "n1", "pvc-del_ns_c", corev1.PersistentVolumeReclaimDelete, true),
		localPV("pvc-ret", "n1", "pvc-ret_ns_c", corev1.PersistentVolumeReclaimRetain, true),
		localPV("pvc-other", "n2", "pvc-other_ns_c", corev1.PersistentVolumeReclaimDelete, true))
	for _, d := range []string{"pvc-del_ns_c/sub", "pvc-ret_ns_c", "pvc-other_ns_c"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"pvc-del", "pvc-ret", "pvc-other"} {
		if err := v.sync(context.Background(), name); err != nil {
			t.Fatalf("sync %s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "pvc-del_ns_c")); !os.IsNotExist(err) {
		t.Errorf("Delete: directory still there (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(root, "pvc-ret_ns_c")); err != nil {
		t.Errorf("Retain: directory gone: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "pvc-other_ns_c")); err != nil {
		t.Errorf("another node's volume: directory gone: %v", err)
	}
	for name, want := range map[string][]string{
		"pvc-del":   {"kubernetes.io/pv-protection"},
		"pvc-ret":   {"kubernetes.io/pv-protection"},
		"pvc-other": {"kubernetes.io/pv-protection", Finalizer},
	} {
		if got := finalizers(t, client, name); !slices.Equal(got, want) {
			t.Errorf("%s: finalizers %v, want %v", name, got, want)
		}
	}
}

// TestNodeStaysInRoot: a path outside the root is never created or
// removed, and a symlink planted in a volume does not lead the removal out.
func TestNodeStaysInRoot(t *testing.T) {
	outside := t.TempDir()
	victim := filepath.Join(outside, "precious")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, client, root := nodeVolumes(t,
		localPV("pvc-out", "n1", outside, corev1.PersistentVolumeReclaimDelete, true),
		localPV("pvc-up", "n1", "../escape", corev1.PersistentVolumeReclaimDelete, false),
		localPV("pvc-deep", "n1", "a/b", corev1.PersistentVolumeReclaimDelete, false),
		localPV("pvc-link", "n1", "pvc-link_ns_c", corev1.PersistentVolumeReclaimDelete, true),
		localPV("pvc-islink", "n1", "pvc-islink_ns_c", corev1.PersistentVolumeReclaimDelete, true))
	// pvc-up's path is made absolute by nodeVolumes: <root>/../escape,
	// not clean, refused.
	if err := os.MkdirAll(filepath.Join(root, "pvc-link_ns_c"), 0o777); err != nil {
		t.Fatal(err)
	}
	// A pod's symlink inside its volume, and a volume directory replaced by
	// a symlink: both point outside.
	if err := os.Symlink(outside, filepath.Join(root, "pvc-link_ns_c", "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "pvc-islink_ns_c")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"pvc-out", "pvc-up", "pvc-deep", "pvc-link", "pvc-islink"} {
		if err := v.sync(context.Background(), name); err != nil {
			t.Fatalf("sync %s: %v", name, err)
		}
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep" {
		t.Fatalf("a file outside the root: %q, %v", b, err)
	}
	for _, p := range []string{filepath.Join(filepath.Dir(root), "escape"), filepath.Join(root, "a")} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s created (%v)", p, err)
		}
	}
	// Outside the root: the finalizer stays (the administrator decides).
	if got := finalizers(t, client, "pvc-out"); !slices.Contains(got, Finalizer) {
		t.Errorf("pvc-out: finalizers %v; want %s kept", got, Finalizer)
	}
	for _, p := range []string{"pvc-link_ns_c", "pvc-islink_ns_c"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s not removed (%v)", p, err)
		}
	}
}

// TestNodeRun: the informer loop, on the API: a new volume of this node
// gets its directory without a sync call.
func TestNodeRun(t *testing.T) {
	v, client, root := nodeVolumes(t)
	v.pvs = v.factory.Core().V1().PersistentVolumes().Lister() // the informer's, as in Start
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.run(ctx) }()
	pv := localPV("pvc-new", "n1", filepath.Join(root, "pvc-new_ns_c"), corev1.PersistentVolumeReclaimDelete, false)
	if _, err := client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(root, "pvc-new_ns_c")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no directory for a new volume after 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
