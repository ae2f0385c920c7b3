package certs

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Reasons of the Events the renewer records on the Node.
const (
	// ReasonRenewed (Normal): a certificate was issued again.
	ReasonRenewed = "CertificateRenewed"
	// ReasonExpiring (Warning): a certificate is in its renewal window and
	// was not renewed (a CA, or a renewal that failed).
	ReasonExpiring = "CertificateExpiring"
	// ReasonRenewFailed (Warning): renewing failed; the error is the message.
	ReasonRenewFailed = "CertificateRenewalFailed"
)

// eventSource is the Events' source component.
const eventSource = "kedge-certificates"

// recordEvent creates one Event on node.
func recordEvent(ctx context.Context, c kubernetes.Interface, node string, warning bool, reason, message string) error {
	typ := corev1.EventTypeNormal
	if warning {
		typ = corev1.EventTypeWarning
	}
	t := time.Now()
	now := metav1.NewTime(t)
	ev := &corev1.Event{
		// Named as client-go's recorder names Events: object.timestamp.
		ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", node, t.UnixNano()), Namespace: metav1.NamespaceDefault},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: node, UID: "", APIVersion: "v1"},
		Reason:         reason,
		Message:        message,
		Type:           typ,
		Source:         corev1.EventSource{Component: eventSource, Host: node},
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.CoreV1().Events(metav1.NamespaceDefault).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("event %s on node %s: %w", reason, node, err)
	}
	return nil
}
