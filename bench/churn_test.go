package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// fakeDeployment plays the deployment controller and kubelet for Churn:
// after a scale, the pods list shows the new pods Pending for a few polls,
// then Running; on a scale down they are Terminating for a few polls.
type fakeDeployment struct {
	mu        sync.Mutex
	replicas  int32
	polls     int // pod lists since the last scale
	conflicts int // UpdateScale conflicts still to answer
	scales    []int32
	neverRun  bool // pods stay Pending
	evicted   bool // the first pod is evicted once Running
}

func (f *fakeDeployment) install(cs *fake.Clientset) {
	cs.PrependReactor("get", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		return true, &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "churn", Namespace: "default"},
			Spec: autoscalingv1.ScaleSpec{Replicas: f.replicas}}, nil
	})
	cs.PrependReactor("update", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.conflicts > 0 {
			f.conflicts--
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, "churn", fmt.Errorf("modified"))
		}
		s := a.(k8stesting.UpdateAction).GetObject().(*autoscalingv1.Scale)
		f.scales = append(f.scales, s.Spec.Replicas)
		old := f.replicas
		f.replicas, f.polls = s.Spec.Replicas, 0
		if s.Spec.Replicas < old {
			f.polls = -100 // remember a scale down through the sign
		}
		return true, s, nil
	})
	cs.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		list := &corev1.PodList{}
		labels := map[string]string{"app": "churn"} // the fake filters by the selector
		down := f.polls < 0
		f.polls++
		switch {
		case down && f.polls < -97: // still terminating: the old pods, Running, being deleted
			for i := 0; i < 3; i++ {
				now := metav1.Now()
				list.Items = append(list.Items, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint(i), Labels: labels, DeletionTimestamp: &now},
					Status: corev1.PodStatus{Phase: corev1.PodRunning}})
			}
		case !down:
			for i := int32(0); i < f.replicas; i++ {
				phase := corev1.PodPending
				if !f.neverRun && (f.polls > 3 || i < int32(f.polls)) {
					phase = corev1.PodRunning
				}
				st := corev1.PodStatus{Phase: phase}
				if f.evicted && i == 0 && phase == corev1.PodRunning {
					st = corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "The node was low on resource: ephemeral-storage."}
				}
				list.Items = append(list.Items, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint(i), Labels: labels}, Status: st})
			}
		}
		return true, list, nil
	})
}

func TestChurn(t *testing.T) {
	cs := fake.NewClientset()
	f := &fakeDeployment{conflicts: 1}
	f.install(cs)
	peaks := 0
	atPeak := func(ctx context.Context) error {
		peaks++
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.scales) != 1 || f.replicas != 3 || f.polls < 3 {
			t.Errorf("AtPeak ran at scales %v, replicas %d, poll %d: want after the scale-up, all Running, before the scale-down", f.scales, f.replicas, f.polls)
		}
		return nil
	}
	r, err := Churn(context.Background(), cs, ChurnConfig{Namespace: "default", Name: "churn", Image: "img", Replicas: 3, Timeout: 10 * time.Second, AtPeak: atPeak})
	if err != nil {
		t.Fatal(err)
	}
	if peaks != 1 {
		t.Errorf("AtPeak ran %d times, want once", peaks)
	}
	if len(f.scales) != 2 || f.scales[0] != 3 || f.scales[1] != 0 {
		t.Errorf("scales %v, want [3 0] (after a conflict retried)", f.scales)
	}
	// All three pods run at the third list, the Terminating ones are gone at
	// the third: two poll intervals each, at least.
	if r.Up < 2*PollInterval || r.Down < 2*PollInterval {
		t.Errorf("up %v, down %v: returned before the pods were all Running / gone", r.Up, r.Down)
	}
	if _, err := cs.AppsV1().Deployments("default").Get(context.Background(), "churn", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the Deployment was not deleted: %v", err)
	}
}

func TestChurnTimesOut(t *testing.T) {
	cs := fake.NewClientset()
	(&fakeDeployment{neverRun: true}).install(cs)
	_, err := Churn(context.Background(), cs, ChurnConfig{Namespace: "default", Name: "churn", Image: "img", Replicas: 2, Timeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "2 pods, 0 running") {
		t.Fatalf("err = %v, want a timeout with the pods still Pending", err)
	}
}

func TestChurnAtPeakFails(t *testing.T) {
	cs := fake.NewClientset()
	f := &fakeDeployment{}
	f.install(cs)
	_, err := Churn(context.Background(), cs, ChurnConfig{Namespace: "default", Name: "churn", Image: "img", Replicas: 2, Timeout: 10 * time.Second,
		AtPeak: func(context.Context) error { return fmt.Errorf("pid 7: gone") }})
	if err == nil || !strings.Contains(err.Error(), "with 2 pods running: pid 7: gone") {
		t.Fatalf("err = %v, want the sample's error", err)
	}
	if len(f.scales) != 1 {
		t.Errorf("scales %v: want no scale-down after a failed sample", f.scales)
	}
}

func TestChurnEvicted(t *testing.T) {
	cs := fake.NewClientset()
	(&fakeDeployment{evicted: true}).install(cs)
	begin := time.Now()
	_, err := Churn(context.Background(), cs, ChurnConfig{Namespace: "default", Name: "churn", Image: "img", Replicas: 2, Timeout: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "pod 0 failed: Evicted: The node was low on resource: ephemeral-storage.") {
		t.Fatalf("err = %v, want the eviction", err)
	}
	if time.Since(begin) > 10*time.Second {
		t.Errorf("the eviction was reported after %v, not at once", time.Since(begin))
	}
}
