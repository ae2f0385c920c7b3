package upgrade

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
)

func testNode(name string, server bool) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}, Annotations: map[string]string{VersionAnnotation: "v1"}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	if server {
		n.Labels[ControlPlaneLabel] = "true"
	}
	return n
}

func testUpgrade(name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "kedge.io/v1alpha1", "kind": "Upgrade", "metadata": map[string]any{"name": name}, "spec": spec}}
	u.SetCreationTimestamp(metav1.NewTime(time.Now()))
	return u
}

type testCluster struct {
	t  *testing.T
	w  *walker
	kc *fake.Clientset
}

func newTestCluster(t *testing.T, u *unstructured.Unstructured, nodes ...*corev1.Node) *testCluster {
	var objs []runtime.Object
	for _, n := range nodes {
		objs = append(objs, n)
	}
	kc := fake.NewClientset(objs...)
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{Resource: "UpgradeList"}, u)
	w := &walker{cfg: ControllerConfig{NodeTimeout: time.Minute, DrainTimeout: time.Minute}, client: kc, upgrades: dyn.Resource(Resource),
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), started: map[string]time.Time{}}
	return &testCluster{t: t, w: w, kc: kc}
}

func (c *testCluster) node(name string) *corev1.Node {
	n, err := c.kc.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

// planned lists the nodes that hold a plan, the cordoned ones marked *.
func (c *testCluster) planned() string {
	list, _ := c.kc.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	var out []string
	for _, n := range list.Items {
		if n.Annotations[PlanAnnotation] != "" {
			s := n.Name
			if n.Spec.Unschedulable {
				s += "*"
			}
			out = append(out, s)
		}
	}
	return strings.Join(out, ",")
}

// restart plays a node that restarted with version v.
func (c *testCluster) restart(name, v string) {
	n := c.node(name)
	n.Annotations[VersionAnnotation] = v
	if _, err := c.kc.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *testCluster) status(name string) Status {
	u, err := c.w.upgrades.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	up, err := fromUnstructured(u)
	if err != nil {
		c.t.Fatal(err)
	}
	return up.Status
}

func (c *testCluster) pass() {
	if err := c.w.pass(context.Background()); err != nil {
		c.t.Fatal(err)
	}
}

// TestControllerOrder: servers one at a time, then agents concurrency at a
// time; each cordoned while it upgrades and uncordoned after; the Upgrade
// ends Succeeded.
func TestControllerOrder(t *testing.T) {
	c := newTestCluster(t, testUpgrade("u", map[string]any{"version": "v2", "path": "/srv", "concurrency": int64(2), "drain": false}),
		testNode("w1", false), testNode("s2", true), testNode("w2", false), testNode("s1", true), testNode("w3", false))
	for _, step := range []struct{ planned, upgrade string }{
		{"s1*", "s1"},
		{"s2*", "s2"},
		{"w1*,w2*", "w1"},
		{"w2*,w3*", "w2"},
		{"w3*", "w3"},
	} {
		c.pass()
		if got := c.planned(); got != step.planned {
			t.Fatalf("before upgrading %s: planned %q, want %q", step.upgrade, got, step.planned)
		}
		if st := c.status("u"); st.Phase != Running {
			t.Fatalf("status %+v", st)
		}
		c.restart(step.upgrade, "v2")
	}
	c.pass()
	if got := c.planned(); got != "" {
		t.Fatalf("plans left: %q", got)
	}
	st := c.status("u")
	if st.Phase != Succeeded || st.Message != "5 nodes run v2" {
		t.Fatalf("status %+v", st)
	}
	for _, name := range []string{"s1", "s2", "w1", "w2", "w3"} {
		if n := c.node(name); n.Spec.Unschedulable || n.Annotations[CordonedAnnotation] != "" {
			t.Fatalf("%s still cordoned: %+v", name, n.Annotations)
		}
	}
}

// TestControllerStopsAtFailure: a node that reports a failed upgrade stops
// the walk, is uncordoned, and no further node is touched.
func TestControllerStopsAtFailure(t *testing.T) {
	c := newTestCluster(t, testUpgrade("u", map[string]any{"version": "v2", "url": "https://example.com/r", "drain": false}),
		testNode("s1", true), testNode("s2", true), testNode("w1", false))
	c.pass()
	if got := c.planned(); got != "s1*" {
		t.Fatalf("planned %q", got)
	}
	n := c.node("s1")
	n.Annotations[ErrorAnnotation] = "v2: https://example.com/r/kedge-amd64: checksum mismatch"
	if _, err := c.kc.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.pass()
	st := c.status("u")
	if st.Phase != Failed || !strings.Contains(st.Message, "s1: https://example.com/r/kedge-amd64: checksum mismatch") {
		t.Fatalf("status %+v", st)
	}
	if n := c.node("s1"); n.Spec.Unschedulable {
		t.Fatal("the failed node is still cordoned")
	}
	c.pass() // a Failed upgrade is left alone
	if got := c.planned(); got != "s1" {
		t.Fatalf("after the failure: planned %q", got)
	}
}
