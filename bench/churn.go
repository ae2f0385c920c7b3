package bench

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// ChurnConfig is the pod churn: a Deployment of Image scaled 0 → Replicas → 0.
type ChurnConfig struct {
	Namespace string
	Name      string
	Image     string
	Replicas  int32
	Timeout   time.Duration // per direction
	// AtPeak, if set, runs once all Replicas pods are Running, before the
	// scale-down (a memory sample); its time counts in neither direction.
	// Its error ends the churn.
	AtPeak func(ctx context.Context) error
}

// ChurnResult is how long each direction took.
type ChurnResult struct {
	Up   time.Duration // scale to Replicas → every pod Running
	Down time.Duration // scale to 0 → no pod left (not even Terminating)
}

// Churn creates the Deployment with 0 replicas, scales it up and waits for
// all pods Running, then scales it down and waits until they are gone.
func Churn(ctx context.Context, cs kubernetes.Interface, c ChurnConfig) (ChurnResult, error) {
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Minute
	}
	sel := map[string]string{"app": c.Name}
	zero := int32(0)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: c.Name, Namespace: c.Namespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: &zero,
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel},
				Spec:       podSpec(c.Image),
			},
		},
	}
	deps := cs.AppsV1().Deployments(c.Namespace)
	if _, err := deps.Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return ChurnResult{}, fmt.Errorf("churn: %w", err)
	}
	selector := labels.SelectorFromSet(sel).String()
	var r ChurnResult
	var err error
	if r.Up, err = scaleAndWait(ctx, cs, c, c.Replicas, selector); err != nil {
		return r, err
	}
	if c.AtPeak != nil {
		if err := c.AtPeak(ctx); err != nil {
			return r, fmt.Errorf("churn: with %d pods running: %w", c.Replicas, err)
		}
	}
	if r.Down, err = scaleAndWait(ctx, cs, c, 0, selector); err != nil {
		return r, err
	}
	_ = deps.Delete(ctx, c.Name, metav1.DeleteOptions{})
	return r, nil
}

// scaleAndWait scales the Deployment to n and waits until exactly n of its
// pods exist and all are Running (for n == 0: until none exists).
func scaleAndWait(ctx context.Context, cs kubernetes.Interface, c ChurnConfig, n int32, selector string) (time.Duration, error) {
	deps := cs.AppsV1().Deployments(c.Namespace)
	begin := time.Now()
	// The deployment controller writes the status meanwhile: retry a conflict.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		scale, err := deps.GetScale(ctx, c.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		scale.Spec.Replicas = n
		_, err = deps.UpdateScale(ctx, c.Name, scale, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("churn: scale to %d: %w", n, err)
	}
	deadline := time.Now().Add(c.Timeout)
	for {
		pods, err := cs.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil {
			running := 0
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
					running++
				}
				// A pod that failed (e.g. evicted under the node's disk
				// pressure) is a broken run, not a slow one: say why at once.
				if n > 0 && p.Status.Phase == corev1.PodFailed {
					return 0, fmt.Errorf("churn: scale to %d: pod %s failed: %s: %s", n, p.Name, p.Status.Reason, p.Status.Message)
				}
			}
			if len(pods.Items) == int(n) && running == int(n) {
				return time.Since(begin), nil
			}
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("churn: scale to %d: %d pods, %d running after %s", n, len(pods.Items), running, c.Timeout)
			}
		} else if time.Now().After(deadline) {
			return 0, fmt.Errorf("churn: scale to %d: %w", n, err)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(PollInterval):
		}
	}
}
