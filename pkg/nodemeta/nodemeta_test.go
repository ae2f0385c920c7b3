package nodemeta

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

func TestParse(t *testing.T) {
	s, err := Parse([]string{"site=north", "example.com/team=edge", "empty="}, []string{"dedicated=edge:NoSchedule", "gpu:PreferNoSchedule"})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"site": "north", "example.com/team": "edge", "empty": ""}; !reflect.DeepEqual(s.Labels, want) {
		t.Errorf("labels = %v, want %v", s.Labels, want)
	}
	want := []corev1.Taint{{Key: "dedicated", Value: "edge", Effect: corev1.TaintEffectNoSchedule}, {Key: "gpu", Effect: corev1.TaintEffectPreferNoSchedule}}
	if !reflect.DeepEqual(s.Taints, want) {
		t.Errorf("taints = %v, want %v", s.Taints, want)
	}
	if got := s.TaintFlags(); !reflect.DeepEqual(got, []string{"dedicated=edge:NoSchedule", "gpu:PreferNoSchedule"}) {
		t.Errorf("TaintFlags = %v", got)
	}
	if got := s.LabelFlags(); !reflect.DeepEqual(got, []string{"empty=", "example.com/team=edge", "site=north"}) {
		t.Errorf("LabelFlags = %v", got)
	}
	for _, bad := range []struct {
		labels, taints []string
		want           string
	}{
		{labels: []string{"nokey"}, want: `--node-label "nokey": want key=value`},
		{labels: []string{"bad key=1"}, want: `--node-label "bad key=1": key`},
		{labels: []string{"k=bad value"}, want: `--node-label "k=bad value": value`},
		{labels: []string{"k=1", "k=2"}, want: "given twice"},
		{taints: []string{"k=v"}, want: `--node-taint "k=v"`},
		{taints: []string{"k=v:Sometimes"}, want: `--node-taint "k=v:Sometimes"`},
		{taints: []string{"k:NoSchedule-"}, want: "to remove a taint, drop the flag"},
		{taints: []string{"k=1:NoSchedule", "k=2:NoSchedule"}, want: "k:NoSchedule given twice"},
	} {
		if _, err := Parse(bad.labels, bad.taints); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Parse(%v, %v) = %v, want an error with %q", bad.labels, bad.taints, err, bad.want)
		}
	}
}

func TestSplitLabels(t *testing.T) {
	self, restricted := SplitLabels(map[string]string{
		"node-role.kubernetes.io/control-plane": "true",
		"node-restriction.kubernetes.io/x":      "y",
		"example.k8s.io/x":                      "y",
		"node.kubernetes.io/instance-type":      "small",
		"kubernetes.io/hostname":                "node1",
		"example.com/team":                      "edge",
		"plain":                                 "v",
	})
	if want := map[string]string{"node.kubernetes.io/instance-type": "small", "kubernetes.io/hostname": "node1", "example.com/team": "edge", "plain": "v"}; !reflect.DeepEqual(self, want) {
		t.Errorf("self = %v, want %v", self, want)
	}
	if want := map[string]string{"node-role.kubernetes.io/control-plane": "true", "node-restriction.kubernetes.io/x": "y", "example.k8s.io/x": "y"}; !reflect.DeepEqual(restricted, want) {
		t.Errorf("restricted = %v, want %v", restricted, want)
	}
}

func TestCheckAgentLabels(t *testing.T) {
	ok, _ := Parse([]string{"node-role.kubernetes.io/worker=true", "site=x", "topology.kubernetes.io/zone=z"}, nil)
	if err := CheckAgentLabels(ok); err != nil {
		t.Errorf("worker role: %v", err)
	}
	for _, l := range []string{"node-role.kubernetes.io/control-plane=true", "node-role.kubernetes.io/master=", "node-restriction.kubernetes.io/x=y", "example.k8s.io/x=y"} {
		s, _ := Parse([]string{l}, nil)
		if err := CheckAgentLabels(s); err == nil || !strings.Contains(err.Error(), "--node-label") || !strings.Contains(err.Error(), "kedge kubectl label node") {
			t.Errorf("%s: err = %v", l, err)
		}
	}
}

// TestReconcile: what kedge set and the flags dropped goes; what anyone
// else set stays; changed values are updated.
func TestReconcile(t *testing.T) {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"kubernetes.io/hostname": "n", "old": "1", "keep": "1", "admin": "x"}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{
			{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoSchedule},
			{Key: "old", Effect: corev1.TaintEffectNoSchedule},
			{Key: "admin", Effect: corev1.TaintEffectNoExecute},
			{Key: "keep", Value: "a", Effect: corev1.TaintEffectNoSchedule},
		}},
	}
	before := Applied{Labels: []string{"keep", "old"}, Taints: []string{"keep:NoSchedule", "old:NoSchedule"}}
	want, _ := Parse([]string{"keep=2", "new=1"}, []string{"keep=b:NoSchedule", "new:NoExecute"})
	after, changed := Reconcile(node, want, before, Scope{Labels: true, Taints: true})
	if !changed {
		t.Fatal("changed = false")
	}
	if l := map[string]string{"kubernetes.io/hostname": "n", "keep": "2", "new": "1", "admin": "x"}; !reflect.DeepEqual(node.Labels, l) {
		t.Errorf("labels = %v, want %v", node.Labels, l)
	}
	wantTaints := []corev1.Taint{
		{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoSchedule},
		{Key: "admin", Effect: corev1.TaintEffectNoExecute},
		{Key: "keep", Value: "b", Effect: corev1.TaintEffectNoSchedule},
		{Key: "new", Effect: corev1.TaintEffectNoExecute},
	}
	if !reflect.DeepEqual(node.Spec.Taints, wantTaints) {
		t.Errorf("taints = %v, want %v", node.Spec.Taints, wantTaints)
	}
	if w := (Applied{Labels: []string{"keep", "new"}, Taints: []string{"keep:NoSchedule", "new:NoExecute"}}); !reflect.DeepEqual(after, w) {
		t.Errorf("record = %+v, want %+v", after, w)
	}
	if _, changed := Reconcile(node, want, after, Scope{Labels: true, Taints: true}); changed {
		t.Error("a second Reconcile changed the Node")
	}
	// A record that does not decode removes nothing.
	if a := Decode("{not json"); len(a.Labels)+len(a.Taints) != 0 {
		t.Errorf("Decode(garbage) = %+v", a)
	}
	if a := Decode(after.Encode()); !reflect.DeepEqual(a, after) {
		t.Errorf("Decode(Encode) = %+v", a)
	}
}

// TestSyncer: on a server, the syncer waits for the Node, then sets the
// labels the kubelet may not and the taints, and records them.
func TestSyncer(t *testing.T) {
	client := fake.NewClientset()
	want, _ := Parse([]string{ControlPlaneLabel + "=true", "site=north"}, []string{"dedicated=edge:NoSchedule"})
	s := NewSyncer(SyncerConfig{NodeName: "n1", Spec: want, Apply: AdminApply(func() (kubernetes.Interface, error) { return client, nil })})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(ctx)
	time.Sleep(100 * time.Millisecond) // the first attempt finds no Node
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"kubernetes.io/hostname": "n1", "site": "north"}}}
	if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		got, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Annotations[AppliedAnnotation] != "" {
			if got.Labels[ControlPlaneLabel] != "true" || len(got.Spec.Taints) != 1 || got.Spec.Taints[0].Key != "dedicated" {
				t.Fatalf("node = %v %v", got.Labels, got.Spec.Taints)
			}
			if a := Decode(got.Annotations[AppliedAnnotation]); !reflect.DeepEqual(a.Labels, []string{ControlPlaneLabel, "site"}) {
				t.Fatalf("record = %+v", a)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the syncer did not apply the spec")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestExternalIPs(t *testing.T) {
	ips, err := ParseExternalIPs([]string{"203.0.113.5", "2001:db8::5"})
	if err != nil || len(ips) != 2 {
		t.Fatalf("ParseExternalIPs = %v, %v", ips, err)
	}
	for _, bad := range [][]string{{"nope"}, {"127.0.0.1"}, {"0.0.0.0"}, {"203.0.113.5", "203.0.113.6"}} {
		if _, err := ParseExternalIPs(bad); err == nil || !strings.Contains(err.Error(), "--node-external-ip") {
			t.Errorf("ParseExternalIPs(%v) = %v, want an error naming the flag", bad, err)
		}
	}
	node := &corev1.Node{}
	if _, changed := Reconcile(node, Spec{ExternalIPs: ips}, Applied{}, Scope{Labels: true}); !changed || node.Annotations[ExternalIPAnnotation] != "203.0.113.5,2001:db8::5" {
		t.Errorf("annotation = %q, changed = %v", node.Annotations[ExternalIPAnnotation], changed)
	}
	if _, changed := Reconcile(node, Spec{}, Applied{}, Scope{Labels: true}); !changed || node.Annotations[ExternalIPAnnotation] != "" {
		t.Errorf("annotation left after the flag went: %q", node.Annotations[ExternalIPAnnotation])
	}
}
