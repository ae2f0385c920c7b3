package etcdnode

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/kedge-io/kedge/pkg/etcd"
)

// fakeEtcd is a membership whose removals go through the real quorum check.
type fakeEtcd struct {
	members []etcd.Member
	removed []string
}

func (f *fakeEtcd) remove(_ context.Context, name string) (etcd.Member, error) {
	m, err := etcd.CheckRemoval(f.members, name)
	if err != nil {
		return m, err
	}
	f.removed = append(f.removed, name)
	f.members = slices.DeleteFunc(f.members, func(x etcd.Member) bool { return x.Name == name })
	return m, nil
}

func members(spec ...string) []etcd.Member {
	var out []etcd.Member
	for i, s := range spec {
		name, down := strings.CutSuffix(s, "!")
		out = append(out, etcd.Member{ID: uint64(i + 1), Name: name, Healthy: !down})
	}
	return out
}

func node(name string, deleted bool, finalizers ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: finalizers}}
	if deleted {
		n.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	}
	return n
}

// setup returns a reconciler for server "a" over the given Nodes.
func setup(t *testing.T, e *fakeEtcd, nodes ...*corev1.Node) (*reconciler, *fake.Clientset, *record.FakeRecorder) {
	t.Helper()
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, n := range nodes {
		if err := indexer.Add(n); err != nil {
			t.Fatal(err)
		}
	}
	client := fake.NewClientset()
	for _, n := range nodes {
		if err := client.Tracker().Add(n); err != nil {
			t.Fatal(err)
		}
	}
	rec := record.NewFakeRecorder(10)
	return &reconciler{
		own:      "a",
		client:   client,
		remove:   e.remove,
		nodes:    listersv1.NewNodeLister(indexer),
		recorder: rec,
		log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, client, rec
}

func finalizers(t *testing.T, c *fake.Clientset, name string) []string {
	t.Helper()
	n, err := c.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Finalizers
}

func TestOwnNodeGetsTheFinalizer(t *testing.T) {
	e := &fakeEtcd{members: members("a", "b")}
	r, c, _ := setup(t, e, node("a", false, "other.io/keep"), node("w", false))
	for _, name := range []string{"a", "w", "gone"} {
		if _, err := r.reconcile(context.Background(), name); err != nil {
			t.Fatalf("reconcile %s: %v", name, err)
		}
	}
	if got := finalizers(t, c, "a"); !slices.Equal(got, []string{"other.io/keep", Finalizer}) {
		t.Errorf("own Node finalizers = %v", got)
	}
	if got := finalizers(t, c, "w"); len(got) != 0 {
		t.Errorf("another Node got finalizers %v (only a server marks its own Node)", got)
	}
	if len(e.removed) != 0 {
		t.Errorf("removed %v", e.removed)
	}
}

func TestDeletedServerNodeLeavesEtcd(t *testing.T) {
	e := &fakeEtcd{members: members("a", "b", "c")}
	r, c, _ := setup(t, e, node("c", true, Finalizer, "other.io/keep"))
	again, err := r.reconcile(context.Background(), "c")
	if err != nil || again != 0 {
		t.Fatalf("reconcile = %s, %v", again, err)
	}
	if !slices.Equal(e.removed, []string{"c"}) {
		t.Errorf("removed %v, want [c]", e.removed)
	}
	if got := finalizers(t, c, "c"); !slices.Equal(got, []string{"other.io/keep"}) {
		t.Errorf("finalizers after removal = %v", got)
	}
}

func TestRemovalRefusedForQuorumKeepsTheNode(t *testing.T) {
	e := &fakeEtcd{members: members("a", "b", "c!")}
	r, c, rec := setup(t, e, node("b", true, Finalizer))
	again, err := r.reconcile(context.Background(), "b")
	if err != nil {
		t.Fatal(err)
	}
	if again != retryRefused {
		t.Errorf("retry after %s, want %s", again, retryRefused)
	}
	if len(e.removed) != 0 {
		t.Errorf("removed %v despite the quorum", e.removed)
	}
	if got := finalizers(t, c, "b"); !slices.Equal(got, []string{Finalizer}) {
		t.Errorf("finalizers = %v: the Node must stay until its member can go", got)
	}
	select {
	case ev := <-rec.Events:
		for _, w := range []string{"Warning EtcdMemberRemovalRefused", "quorum is 2", "bring c back first"} {
			if !strings.Contains(ev, w) {
				t.Errorf("event %q lacks %q", ev, w)
			}
		}
	default:
		t.Error("no event explains the refusal")
	}
	// c comes back: the next try removes b.
	e.members[2].Healthy = true
	if again, err := r.reconcile(context.Background(), "b"); err != nil || again != 0 {
		t.Fatalf("retry = %s, %v", again, err)
	}
	if !slices.Equal(e.removed, []string{"b"}) || len(finalizers(t, c, "b")) != 0 {
		t.Errorf("after c is back: removed %v, finalizers %v", e.removed, finalizers(t, c, "b"))
	}
}

func TestOnlyMemberOrNoMemberLetsTheNodeGo(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members []etcd.Member
		event   string
	}{
		{"the only voting member is kept", members("a"), "Warning EtcdMemberKept"},
		{"a member removed already", members("b", "c"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &fakeEtcd{members: tc.members}
			r, c, rec := setup(t, e, node("a", true, Finalizer))
			if again, err := r.reconcile(context.Background(), "a"); err != nil || again != 0 {
				t.Fatalf("reconcile = %s, %v", again, err)
			}
			if len(e.removed) != 0 {
				t.Errorf("removed %v", e.removed)
			}
			if got := finalizers(t, c, "a"); len(got) != 0 {
				t.Errorf("finalizers = %v: the Node must go", got)
			}
			var ev string
			select {
			case ev = <-rec.Events:
			default:
			}
			if !strings.HasPrefix(ev, tc.event) || (tc.event == "") != (ev == "") {
				t.Errorf("event %q, want %q", ev, tc.event)
			}
		})
	}
}
