package leader

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

const (
	namespace = "kube-system"
	leaseName = "kedge-test"
)

// election returns an election config for identity on a Lease in client,
// with short timings.
func election(client kubernetes.Interface, identity string) leaderelection.LeaderElectionConfig {
	return leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: leaseName},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
		},
		LeaseDuration: 2 * time.Second,
		RenewDeadline: 1 * time.Second,
		RetryPeriod:   200 * time.Millisecond,
		Name:          leaseName,
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// holder returns the lease's holder identity ("" if none or no lease).
func holder(t *testing.T, client kubernetes.Interface) string {
	t.Helper()
	lease, err := client.CoordinationV1().Leases(namespace).Get(context.Background(), leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get lease: %v", err)
	}
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// runAsync runs Run in a goroutine and returns its result channel.
func runAsync(ctx context.Context, le leaderelection.LeaderElectionConfig, run func(context.Context) error) <-chan error {
	done := make(chan error, 1)
	go func() { done <- Run(ctx, le, discard(), run) }()
	return done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func TestRunWhileLeadingAndReleaseOnCancel(t *testing.T) {
	client := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	leading := make(chan string, 1)
	done := runAsync(ctx, election(client, "node-a"), func(leadCtx context.Context) error {
		leading <- holder(t, client)
		<-leadCtx.Done()
		return leadCtx.Err() // an error caused by the end of leading is no failure
	})
	select {
	case h := <-leading:
		if h != "node-a" {
			t.Errorf("while leading the lease is held by %q, want node-a", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run was not called")
	}
	cancel()
	if err := wait(t, done); err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
	if h := holder(t, client); h != "" {
		t.Errorf("lease still held by %q after Run returned, want released", h)
	}
}

func TestRunReturnsRunError(t *testing.T) {
	errRun := errors.New("scheduler failed")
	cases := []struct {
		name    string
		ret     error
		wantIs  error
		wantNil bool
	}{
		{name: "run's error is returned", ret: errRun, wantIs: errRun},
		{name: "run returning nil while wanted is an error", ret: nil, wantIs: ErrLost},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			called := false
			err := wait(t, runAsync(context.Background(), election(client, "node-a"), func(context.Context) error {
				called = true
				return tc.ret
			}))
			if !called {
				t.Fatal("run not called")
			}
			if !errors.Is(err, tc.wantIs) {
				t.Errorf("Run = %v, want %v", err, tc.wantIs)
			}
			if h := holder(t, client); h != "" {
				t.Errorf("lease held by %q after run returned, want released", h)
			}
		})
	}
}

func TestRunDoesNotLeadWhileAnotherHolds(t *testing.T) {
	client := fake.NewClientset()
	other := "node-b"
	now := metav1.NewMicroTime(time.Now())
	_, err := client.CoordinationV1().Leases(namespace).Create(context.Background(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: leaseName},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       &other,
			LeaseDurationSeconds: ptr(int32(60)),
			AcquireTime:          &now,
			RenewTime:            &now,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	called := false
	err = wait(t, runAsync(ctx, election(client, "node-a"), func(context.Context) error {
		called = true
		return nil
	}))
	if err != nil {
		t.Errorf("Run = %v, want nil after ctx is done", err)
	}
	if called {
		t.Error("run called although another node holds the lease")
	}
	if h := holder(t, client); h != other {
		t.Errorf("lease held by %q, want it left to %s", h, other)
	}
}

func TestRunLostLease(t *testing.T) {
	client := fake.NewClientset()
	refuseRenewalsOver(client, "node-a", "node-b")
	leading := make(chan struct{})
	runEnded := make(chan struct{})
	done := runAsync(context.Background(), election(client, "node-a"), func(leadCtx context.Context) error {
		close(leading)
		<-leadCtx.Done()
		close(runEnded)
		return nil
	})
	select {
	case <-leading:
	case <-time.After(5 * time.Second):
		t.Fatal("run was not called")
	}
	// Another node takes the lease over (as after a partition): renewals fail.
	other := "node-b"
	takeOver(t, client, other, 60)
	err := wait(t, done)
	if !errors.Is(err, ErrLost) {
		t.Errorf("Run = %v, want ErrLost", err)
	}
	select {
	case <-runEnded:
	default:
		t.Error("Run returned while run still ran")
	}
	if h := holder(t, client); h != other {
		t.Errorf("lease held by %q, want %s (a lost lease is not released)", h, other)
	}
}

func TestRunInvalidConfig(t *testing.T) {
	le := election(fake.NewClientset(), "node-a")
	le.RenewDeadline = 5 * time.Second // longer than LeaseDuration
	err := Run(context.Background(), le, discard(), func(context.Context) error {
		t.Error("run called")
		return nil
	})
	if err == nil {
		t.Fatal("Run with RenewDeadline > LeaseDuration = nil, want an error")
	}
}

func ptr[T any](v T) *T { return &v }

// refuseRenewalsOver makes client refuse node's renewal of the lease while
// other holds it with a conflict, as the apiserver would: the fake
// clientset does not check resourceVersion, so node's renewal (an update
// from its cached record) would silently overwrite other's takeover. A
// renewal keeps the record's transitions; an acquisition (once other's
// lease has expired) counts one more, and is let through.
func refuseRenewalsOver(client *fake.Clientset, node, other string) {
	transitions := func(l *coordinationv1.Lease) int32 {
		if l.Spec.LeaseTransitions == nil {
			return 0
		}
		return *l.Spec.LeaseTransitions
	}
	client.PrependReactor("update", "leases", func(action k8stesting.Action) (bool, runtime.Object, error) {
		lease := action.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
		obj, err := client.Tracker().Get(coordinationv1.SchemeGroupVersion.WithResource("leases"), namespace, leaseName)
		if err != nil {
			return false, nil, nil
		}
		cur := obj.(*coordinationv1.Lease)
		if h := cur.Spec.HolderIdentity; h != nil && *h == other &&
			lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity == node && transitions(lease) <= transitions(cur) {
			return true, nil, apierrors.NewConflict(coordinationv1.Resource("leases"), leaseName, errors.New("held by "+other))
		}
		return false, nil, nil
	})
}

// takeOver writes other as the lease's holder for seconds, as a server
// that took it over after a partition would.
func takeOver(t *testing.T, client kubernetes.Interface, other string, seconds int32) {
	t.Helper()
	leases := client.CoordinationV1().Leases(namespace)
	lease, err := leases.Get(context.Background(), leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.NewMicroTime(time.Now())
	lease.Spec.HolderIdentity = &other
	lease.Spec.LeaseDurationSeconds = ptr(seconds)
	lease.Spec.RenewTime = &now
	if _, err := leases.Update(context.Background(), lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
