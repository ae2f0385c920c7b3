package diskguard

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// NodeEvents records the guard's Events on a server's Node, as
// `kubectl describe node` and `kubectl get events` show them.
type NodeEvents struct {
	// Client returns a client of the local apiserver.
	Client func() (kubernetes.Interface, error)
	// Node is the server's Node name (the Event's object, even when the
	// server runs no kubelet and has no Node).
	Node string
}

// Report creates one Event, synchronously: the guard raises the alarm only
// after the Warning is stored.
func (e NodeEvents) Report(ctx context.Context, warning bool, reason, message string) error {
	c, err := e.Client()
	if err != nil {
		return err
	}
	typ := corev1.EventTypeNormal
	if warning {
		typ = corev1.EventTypeWarning
	}
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: e.Node + ".", Namespace: metav1.NamespaceDefault},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: e.Node, UID: "", APIVersion: "v1"},
		Reason:         reason,
		Message:        message,
		Type:           typ,
		Source:         corev1.EventSource{Component: "kedge-diskguard", Host: e.Node},
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.CoreV1().Events(metav1.NamespaceDefault).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("event %s on node %s: %w", reason, e.Node, err)
	}
	return nil
}
